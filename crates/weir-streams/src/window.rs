//! Tumbling time windows.

use std::time::Duration;

/// A time window `[start, end)` in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// The first millisecond in the window.
    pub start: i64,
    /// The first millisecond after the window.
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

/// Fixed-size, non-overlapping, gap-less windows aligned to the epoch (Kafka's
/// `TimeWindows.ofSizeWithNoGrace(size)`, optionally `.grace(...)`).
///
/// A record with timestamp `t` falls in the window starting at `t - t % size`. The window
/// takes records until stream time reaches its end plus the grace period; a record for a
/// window that has closed is dropped and counted in
/// [`TaskMetrics::dropped_late`](crate::TaskMetrics::dropped_late).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TumblingWindows {
    pub(crate) size_ms: i64,
    pub(crate) grace_ms: i64,
}

impl TumblingWindows {
    /// Windows of `size`, with no grace period: a window closes as soon as stream time
    /// reaches its end. A `size` under a millisecond is taken as one millisecond.
    pub fn of(size: Duration) -> Self {
        Self {
            size_ms: duration_ms(size).max(1),
            grace_ms: 0,
        }
    }

    /// Keeps each window open for out-of-order records until stream time passes its end by
    /// `grace`.
    pub fn grace(self, grace: Duration) -> Self {
        Self {
            grace_ms: duration_ms(grace),
            ..self
        }
    }

    /// The window size in milliseconds.
    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }

    /// The grace period in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    /// The window a (non-negative) timestamp falls in.
    pub fn window_for(&self, timestamp: i64) -> Window {
        let start = timestamp - timestamp.rem_euclid(self.size_ms);
        Window {
            start,
            end: start.saturating_add(self.size_ms),
        }
    }
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_the_epoch() {
        let windows = TumblingWindows::of(Duration::from_secs(10));
        assert_eq!(
            windows.window_for(0),
            Window {
                start: 0,
                end: 10_000
            }
        );
        assert_eq!(
            windows.window_for(9_999),
            Window {
                start: 0,
                end: 10_000
            }
        );
        assert_eq!(
            windows.window_for(10_000),
            Window {
                start: 10_000,
                end: 20_000
            }
        );
        assert_eq!(windows.grace(Duration::from_secs(2)).grace_ms(), 2_000);
    }
}
