//! Window definitions: time windows (tumbling and hopping), sliding windows, session windows
//! and the join windows of stream-stream joins.

use std::time::Duration;

use crate::Error;

/// A window in milliseconds. For [`TimeWindows`] `end` is exclusive (`[start, end)`); for
/// [`SlidingWindows`] and [`SessionWindows`] it is inclusive (`[start, end]`), as in Kafka
/// Streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// The first millisecond in the window.
    pub start: i64,
    /// The end of the window: exclusive for time windows, inclusive for sliding and session
    /// windows.
    pub end: i64,
}

/// A key together with the window an aggregate belongs to (Kafka's `Windowed<K>`). Ordered by
/// key, then window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Windowed<K> {
    /// The record key.
    pub key: K,
    /// The window.
    pub window: Window,
}

/// Fixed-size windows aligned to the epoch (Kafka's `TimeWindows`): tumbling when the advance
/// equals the size (the default), hopping (overlapping) when it is smaller.
///
/// A record with timestamp `t` falls in every window `[start, start + size)` with `start` a
/// multiple of the advance, `start >= 0` and `start <= t < start + size`. A window takes
/// records until stream time reaches its end plus the grace period; a record for a window
/// that has closed is dropped for that window and counted in
/// [`TaskMetrics::dropped_late`](crate::TaskMetrics::dropped_late).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    pub(crate) size_ms: i64,
    pub(crate) advance_ms: i64,
    pub(crate) grace_ms: i64,
}

/// Tumbling windows are [`TimeWindows`] whose advance is their size (the name this crate's
/// first increment used).
pub type TumblingWindows = TimeWindows;

impl TimeWindows {
    /// Tumbling windows of `size` with no grace period (Kafka's `ofSizeWithNoGrace`): a
    /// window closes as soon as stream time reaches its end. A `size` under a millisecond is
    /// taken as one millisecond.
    pub fn of_size_with_no_grace(size: Duration) -> Self {
        let size_ms = duration_ms(size).max(1);
        Self {
            size_ms,
            advance_ms: size_ms,
            grace_ms: 0,
        }
    }

    /// Tumbling windows of `size` that stay open for `grace` after their end (Kafka's
    /// `ofSizeAndGrace`).
    pub fn of_size_and_grace(size: Duration, grace: Duration) -> Self {
        Self::of_size_with_no_grace(size).grace(grace)
    }

    /// Same as [`TimeWindows::of_size_with_no_grace`].
    pub fn of(size: Duration) -> Self {
        Self::of_size_with_no_grace(size)
    }

    /// Keeps each window open for out-of-order records until stream time passes its end by
    /// `grace`.
    pub fn grace(self, grace: Duration) -> Self {
        Self {
            grace_ms: duration_ms(grace),
            ..self
        }
    }

    /// Hopping windows: a new window starts every `advance` (Kafka's `advanceBy`). Refused
    /// unless `0 < advance <= size`, as Kafka refuses it.
    pub fn advance_by(self, advance: Duration) -> Result<Self, Error> {
        let advance_ms = duration_ms(advance);
        if advance_ms <= 0 || advance_ms > self.size_ms {
            return Err(Error::InvalidWindows(format!(
                "advance {advance_ms} ms must be above zero and at most the size {} ms",
                self.size_ms
            )));
        }
        Ok(Self { advance_ms, ..self })
    }

    /// The window size in milliseconds.
    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }

    /// The advance in milliseconds (the size for tumbling windows).
    pub fn advance_ms(&self) -> i64 {
        self.advance_ms
    }

    /// The grace period in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    /// The windows a (non-negative) timestamp falls in, oldest first (Kafka's `windowsFor`).
    pub fn windows_for(&self, timestamp: i64) -> Vec<Window> {
        // The oldest window holding `timestamp` starts after `timestamp - size`; windows
        // never start before the epoch.
        let first = (timestamp - self.size_ms + self.advance_ms).max(0);
        let mut start = first - first.rem_euclid(self.advance_ms);
        let mut windows = Vec::new();
        while start <= timestamp {
            windows.push(Window {
                start,
                end: start.saturating_add(self.size_ms),
            });
            start += self.advance_ms;
        }
        windows
    }
}

/// Sliding windows (Kafka's `SlidingWindows`): windows of a fixed time difference whose
/// bounds are both inclusive, one per distinct set of records, aligned to the records rather
/// than the epoch.
///
/// Each record at `t` gets its *left* window `[t - timeDifference, t]`; a window
/// `[t + 1, t + 1 + timeDifference]` (the record's *right* window) exists once a later record
/// falls in it. Records before `timeDifference` share the window `[0, timeDifference]`, as in
/// Kafka. A window closes when stream time passes its end by the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    pub(crate) time_difference_ms: i64,
    pub(crate) grace_ms: i64,
}

impl SlidingWindows {
    /// Sliding windows with no grace period.
    pub fn of_time_difference_with_no_grace(time_difference: Duration) -> Self {
        Self::of_time_difference_and_grace(time_difference, Duration::ZERO)
    }

    /// Sliding windows that stay open for `grace` after their end.
    pub fn of_time_difference_and_grace(time_difference: Duration, grace: Duration) -> Self {
        Self {
            time_difference_ms: duration_ms(time_difference),
            grace_ms: duration_ms(grace),
        }
    }

    /// The time difference (the window size less one millisecond) in milliseconds.
    pub fn time_difference_ms(&self) -> i64 {
        self.time_difference_ms
    }

    /// The grace period in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }
}

/// Session windows (Kafka's `SessionWindows`): per key, records less than the inactivity gap
/// apart form one session `[first timestamp, last timestamp]` (both inclusive). A record that
/// falls within the gap of two sessions merges them. A session closes when stream time passes
/// its end by the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    pub(crate) gap_ms: i64,
    pub(crate) grace_ms: i64,
}

impl SessionWindows {
    /// Sessions with this inactivity gap and no grace period.
    pub fn of_inactivity_gap_with_no_grace(gap: Duration) -> Self {
        Self::of_inactivity_gap_and_grace(gap, Duration::ZERO)
    }

    /// Sessions with this inactivity gap, open for `grace` after their end.
    pub fn of_inactivity_gap_and_grace(gap: Duration, grace: Duration) -> Self {
        Self {
            gap_ms: duration_ms(gap),
            grace_ms: duration_ms(grace),
        }
    }

    /// The inactivity gap in milliseconds.
    pub fn inactivity_gap_ms(&self) -> i64 {
        self.gap_ms
    }

    /// The grace period in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }
}

/// The windows of a stream-stream join (Kafka's `JoinWindows`): a record at `t` on the left
/// joins the right records with timestamps in `[t - before, t + after]` (symmetrically, a
/// right record at `t` joins left records in `[t - after, t + before]`). Both bounds are
/// inclusive. Records are kept for `before + after + grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    pub(crate) before_ms: i64,
    pub(crate) after_ms: i64,
    pub(crate) grace_ms: i64,
}

impl JoinWindows {
    /// Records at most `time_difference` apart join; no grace period.
    pub fn of_time_difference_with_no_grace(time_difference: Duration) -> Self {
        Self::of_time_difference_and_grace(time_difference, Duration::ZERO)
    }

    /// Records at most `time_difference` apart join; records are kept `grace` longer for
    /// out-of-order partners, and left/outer results wait as long.
    pub fn of_time_difference_and_grace(time_difference: Duration, grace: Duration) -> Self {
        let difference = duration_ms(time_difference);
        Self {
            before_ms: difference,
            after_ms: difference,
            grace_ms: duration_ms(grace),
        }
    }

    /// How far before a left record a right record may be and still join.
    pub fn before(self, before: Duration) -> Self {
        Self {
            before_ms: duration_ms(before),
            ..self
        }
    }

    /// How far after a left record a right record may be and still join.
    pub fn after(self, after: Duration) -> Self {
        Self {
            after_ms: duration_ms(after),
            ..self
        }
    }

    /// The time before, in milliseconds.
    pub fn before_ms(&self) -> i64 {
        self.before_ms
    }

    /// The time after, in milliseconds.
    pub fn after_ms(&self) -> i64 {
        self.after_ms
    }

    /// The grace period in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }
}

pub(crate) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn w(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    #[test]
    fn tumbling_windows_align_to_the_epoch() {
        let windows = TimeWindows::of(Duration::from_secs(10));
        assert_eq!(windows.windows_for(0), vec![w(0, 10_000)]);
        assert_eq!(windows.windows_for(9_999), vec![w(0, 10_000)]);
        assert_eq!(windows.windows_for(10_000), vec![w(10_000, 20_000)]);
        assert_eq!(windows.grace(Duration::from_secs(2)).grace_ms(), 2_000);
    }

    #[test]
    fn hopping_windows_overlap_and_start_at_the_epoch() {
        // size 10, advance 5: starts are multiples of 5; t is in [s, s + 10) for s in
        // (t - 10, t], so every t >= 5 is in two windows and t < 5 only in [0, 10).
        let windows = TimeWindows::of(Duration::from_millis(10))
            .advance_by(Duration::from_millis(5))
            .unwrap();
        assert_eq!(windows.windows_for(3), vec![w(0, 10)]);
        assert_eq!(windows.windows_for(5), vec![w(0, 10), w(5, 15)]);
        assert_eq!(windows.windows_for(9), vec![w(0, 10), w(5, 15)]);
        assert_eq!(windows.windows_for(10), vec![w(5, 15), w(10, 20)]);
        // size 10, advance 3: starts 0, 3, 6, 9...; t = 10 is in [3, 13), [6, 16), [9, 19).
        let windows = TimeWindows::of(Duration::from_millis(10))
            .advance_by(Duration::from_millis(3))
            .unwrap();
        assert_eq!(windows.windows_for(10), vec![w(3, 13), w(6, 16), w(9, 19)]);
        assert!(
            TimeWindows::of(Duration::from_millis(10))
                .advance_by(Duration::from_millis(11))
                .is_err()
        );
        assert!(
            TimeWindows::of(Duration::from_millis(10))
                .advance_by(Duration::ZERO)
                .is_err()
        );
    }
}
