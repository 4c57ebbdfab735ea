//! [`LeaderEpochCache`]: which leader epoch each range of the log was written in (Kafka's
//! `LeaderEpochFileCache`, KIP-101 and KIP-279), as sorted `(epoch, start offset)` entries.
//!
//! Pure: no I/O. [`crate::Log`] keeps one per partition, persists it in the
//! `leader-epoch-checkpoint` file (see [`encode`] and [`decode`]) and trims it to the log's
//! range whenever the log is truncated, loses its head to retention, or is reopened.
//!
//! The entries are strictly increasing in both epoch and start offset. An epoch ends where the
//! next one starts; the latest epoch runs to the log end offset.

/// The epoch of an [`EpochEndOffset`] when the requested epoch is unknown
/// (`OffsetsForLeaderEpochResponse.UNDEFINED_EPOCH` in Kafka).
pub const UNDEFINED_EPOCH: i32 = -1;

/// The end offset of an [`EpochEndOffset`] when the requested epoch is unknown
/// (`OffsetsForLeaderEpochResponse.UNDEFINED_EPOCH_OFFSET` in Kafka).
pub const UNDEFINED_OFFSET: i64 = -1;

/// Format version of the `leader-epoch-checkpoint` file.
const VERSION: &str = "0";

/// The first offset written in a leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// Offset of the first batch appended in that epoch.
    pub start_offset: i64,
}

/// The answer to an OffsetForLeaderEpoch query (KIP-101, KIP-279).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EpochEndOffset {
    /// The largest epoch at or below the requested one that the log knows, or
    /// [`UNDEFINED_EPOCH`].
    pub leader_epoch: i32,
    /// Where that epoch ends: the start offset of the next higher epoch, or the log end offset
    /// for the latest epoch; [`UNDEFINED_OFFSET`] when unknown.
    pub end_offset: i64,
}

impl EpochEndOffset {
    /// Neither epoch nor offset is known.
    pub const UNDEFINED: Self = Self {
        leader_epoch: UNDEFINED_EPOCH,
        end_offset: UNDEFINED_OFFSET,
    };
}

/// Start offsets of the leader epochs of one partition's log, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    /// Strictly increasing in both fields.
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache holding `entries` as [`LeaderEpochCache::assign`] would leave them, one after
    /// the other (so entries out of order cannot break the ordering).
    pub fn from_entries(entries: impl IntoIterator<Item = EpochEntry>) -> Self {
        let mut cache = Self::new();
        for entry in entries {
            cache.assign(entry.epoch, entry.start_offset);
        }
        cache
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// Whether no epoch is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The latest epoch, which runs to the log end offset.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.latest_entry().map(|e| e.epoch)
    }

    /// The latest entry.
    pub fn latest_entry(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset`; returns whether the cache changed.
    ///
    /// As in Kafka, this changes the cache when it is empty, when `epoch` differs from the
    /// latest epoch, or when it is the latest epoch starting earlier. Entries that would break
    /// the ordering (an epoch at or above `epoch`, or a start offset at or above
    /// `start_offset`) are removed from the end first, so a lower epoch replaces the later
    /// entries it conflicts with (with a warning: only a leader that missed an election or a
    /// damaged log appends one). A negative epoch or offset (a batch no leader stamped) is
    /// ignored.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        let needed = self
            .latest_entry()
            .is_none_or(|l| l.epoch != epoch || start_offset < l.start_offset);
        if !needed {
            return false;
        }
        let keep = self
            .entries
            .iter()
            .rposition(|e| e.epoch < epoch && e.start_offset < start_offset)
            .map_or(0, |i| i + 1);
        let removed = self.entries.split_off(keep);
        // Replacing an entry at the same offset is the expected case of an epoch that started
        // but wrote nothing; anything else rewrites history.
        if removed.len() > 1
            || removed
                .first()
                .is_some_and(|r| r.start_offset != start_offset)
        {
            tracing::warn!(
                epoch,
                start_offset,
                ?removed,
                "new leader epoch entry removes conflicting entries"
            );
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Removes the entries starting at or after `end_offset` (the log was truncated there);
    /// returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// Drops the entries wholly below `start_offset` (the new log start offset) and moves the
    /// start of the epoch covering it to `start_offset`; returns whether the cache changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let below = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        let Some(covering) = below.checked_sub(1) else {
            return false;
        };
        let changed = covering > 0
            || self
                .entries
                .first()
                .is_some_and(|e| e.start_offset != start_offset);
        self.entries.drain(..covering);
        if let Some(first) = self.entries.first_mut() {
            first.start_offset = start_offset;
        }
        changed
    }

    /// Removes every entry; returns whether the cache changed.
    pub fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// Kafka's answer to OffsetForLeaderEpoch for `requested_epoch`, given the log end offset:
    ///
    /// - the latest epoch: it and `log_end_offset`;
    /// - an epoch below the latest: the largest known epoch at or below it, ending where the
    ///   next higher known epoch starts; when every known epoch is higher (the older ones went
    ///   with the head of the log), the requested epoch itself, ending where the first known
    ///   epoch starts;
    /// - an epoch above the latest, [`UNDEFINED_EPOCH`], or an empty cache:
    ///   [`EpochEndOffset::UNDEFINED`].
    pub fn end_offset_for(&self, requested_epoch: i32, log_end_offset: i64) -> EpochEndOffset {
        if requested_epoch < 0 {
            return EpochEndOffset::UNDEFINED;
        }
        if self.latest_epoch() == Some(requested_epoch) {
            return EpochEndOffset {
                leader_epoch: requested_epoch,
                end_offset: log_end_offset,
            };
        }
        let higher = self.entries.partition_point(|e| e.epoch <= requested_epoch);
        let Some(next) = self.entries.get(higher) else {
            return EpochEndOffset::UNDEFINED;
        };
        let leader_epoch = higher
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map_or(requested_epoch, |floor| floor.epoch);
        EpochEndOffset {
            leader_epoch,
            end_offset: next.start_offset,
        }
    }

    /// The epoch `offset` was written in: that of the last entry starting at or before it;
    /// `None` when it lies before the first entry (or the cache is empty). Offsets past the log
    /// end are not checked.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let after = self.entries.partition_point(|e| e.start_offset <= offset);
        after
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map(|e| e.epoch)
    }
}

/// The `leader-epoch-checkpoint` text, Kafka's format: a version line `0`, a line with the
/// number of entries, then `<epoch> <start offset>` per entry.
pub(crate) fn encode(entries: &[EpochEntry]) -> String {
    use std::fmt::Write as _;
    let mut text = format!("{VERSION}\n{}\n", entries.len());
    for e in entries {
        let _ = writeln!(text, "{} {}", e.epoch, e.start_offset);
    }
    text
}

/// Parses [`encode`]'s text; the error says what is wrong. Entries must be non-negative and
/// strictly increasing in both fields, as the cache writes them.
pub(crate) fn decode(text: &str) -> Result<Vec<EpochEntry>, &'static str> {
    let mut lines = text.lines();
    if lines.next() != Some(VERSION) {
        return Err("unknown version");
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("bad entry count")?;
    let mut entries: Vec<EpochEntry> = Vec::new();
    for line in lines.by_ref().take(count) {
        let mut fields = line.split_whitespace();
        let (Some(epoch), Some(start), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err("an entry is not two fields");
        };
        let entry = EpochEntry {
            epoch: epoch.parse().map_err(|_| "bad epoch")?,
            start_offset: start.parse().map_err(|_| "bad start offset")?,
        };
        if entry.epoch < 0 || entry.start_offset < 0 {
            return Err("negative epoch or offset");
        }
        if entries
            .last()
            .is_some_and(|l| l.epoch >= entry.epoch || l.start_offset >= entry.start_offset)
        {
            return Err("entries out of order");
        }
        entries.push(entry);
    }
    if entries.len() != count {
        return Err("fewer entries than counted");
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err("text after the last entry");
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e(epoch: i32, start_offset: i64) -> EpochEntry {
        EpochEntry {
            epoch,
            start_offset,
        }
    }

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        LeaderEpochCache::from_entries(entries.iter().map(|&(ep, o)| e(ep, o)))
    }

    #[test]
    fn assign_keeps_epochs_and_offsets_increasing() {
        let mut c = LeaderEpochCache::new();
        assert!(c.assign(1, 0));
        assert!(!c.assign(1, 5), "same epoch later: nothing new");
        assert!(c.assign(3, 10));
        assert!(!c.assign(-1, 20), "unstamped batches are ignored");
        assert_eq!(c.entries(), [e(1, 0), e(3, 10)]);
        // The latest epoch starting earlier moves.
        assert!(c.assign(3, 8));
        assert_eq!(c.entries(), [e(1, 0), e(3, 8)]);
        // A new epoch at an offset below later entries replaces them.
        assert!(c.assign(4, 5));
        assert_eq!(c.entries(), [e(1, 0), e(4, 5)]);
        // An empty epoch (same start offset) is replaced by the next one.
        assert!(c.assign(6, 5));
        assert_eq!(c.entries(), [e(1, 0), e(6, 5)]);
        // A lower epoch removes the higher ones, as Kafka does.
        assert!(c.assign(2, 30));
        assert_eq!(c.entries(), [e(1, 0), e(2, 30)]);
        assert_eq!(c.latest_epoch(), Some(2));
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache(&[(1, 0), (3, 10), (5, 20), (6, 30)]);
        assert!(!c.truncate_from_end(31));
        assert!(c.truncate_from_end(30));
        assert_eq!(c.entries(), [e(1, 0), e(3, 10), e(5, 20)]);
        assert!(!c.truncate_from_start(0));
        assert!(c.truncate_from_start(15));
        assert_eq!(c.entries(), [e(3, 15), e(5, 20)]);
        assert!(c.truncate_from_start(20));
        assert_eq!(c.entries(), [e(5, 20)]);
        assert!(!c.truncate_from_start(20));
        assert!(
            !c.truncate_from_start(3),
            "below the first entry: nothing to drop"
        );
        assert!(c.truncate_from_start(100));
        assert_eq!(c.entries(), [e(5, 100)]);
        assert!(c.truncate_from_end(100));
        assert!(c.is_empty());
        assert!(!c.truncate_from_end(0));
        assert!(!c.truncate_from_start(0));
        assert!(!c.clear());
    }

    /// Kafka's `endOffsetFor` (LeaderEpochFileCache) on a cache of epochs 2, 4 and 7.
    #[test]
    fn end_offset_for_table() {
        let c = cache(&[(2, 10), (4, 20), (7, 30)]);
        let leo = 42;
        let cases = [
            (UNDEFINED_EPOCH, UNDEFINED_EPOCH, UNDEFINED_OFFSET),
            (-5, UNDEFINED_EPOCH, UNDEFINED_OFFSET),
            // Below the first known epoch: the epoch asked, ending where the first starts.
            (0, 0, 10),
            (1, 1, 10),
            (2, 2, 20),
            (3, 2, 20),
            (4, 4, 30),
            (6, 4, 30),
            (7, 7, leo),
            // Above the latest: unknown.
            (8, UNDEFINED_EPOCH, UNDEFINED_OFFSET),
        ];
        for (requested, epoch, end) in cases {
            assert_eq!(
                c.end_offset_for(requested, leo),
                EpochEndOffset {
                    leader_epoch: epoch,
                    end_offset: end
                },
                "requested {requested}"
            );
        }
        assert_eq!(
            LeaderEpochCache::new().end_offset_for(0, leo),
            EpochEndOffset::UNDEFINED
        );
    }

    #[test]
    fn epoch_for_offset() {
        let c = cache(&[(2, 10), (4, 20)]);
        let found: Vec<_> = [0, 9, 10, 19, 20, 1000]
            .map(|o| c.epoch_for_offset(o))
            .to_vec();
        assert_eq!(found, [None, None, Some(2), Some(2), Some(4), Some(4)]);
    }

    #[test]
    fn checkpoint_text_round_trips_and_rejects_damage() {
        let entries = [e(0, 0), e(3, 17), e(12, 1 << 40)];
        let text = encode(&entries);
        assert_eq!(text, "0\n3\n0 0\n3 17\n12 1099511627776\n");
        assert_eq!(decode(&text).unwrap(), entries);
        assert_eq!(decode("0\n0\n").unwrap(), []);
        for bad in [
            "",
            "1\n0\n",
            "0\n",
            "0\nx\n",
            "0\n2\n1 0\n",
            "0\n1\n1 0\n2 5\n",
            "0\n1\n1\n",
            "0\n1\n1 0 3\n",
            "0\n2\n1 5\n2 5\n",
            "0\n2\n2 0\n1 5\n",
            "0\n1\n-1 0\n",
            "0\n1\n1 x\n",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    /// What a log looks like to the model: the epoch of every batch, by base offset.
    #[derive(Debug, Clone)]
    enum Op {
        Append { epoch_step: i32, len: i64 },
        TruncateEnd(i64),
        TruncateStart(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3i32, 1..5i64).prop_map(|(epoch_step, len)| Op::Append { epoch_step, len }),
            1 => (0..60i64).prop_map(Op::TruncateEnd),
            1 => (0..60i64).prop_map(Op::TruncateStart),
        ]
    }

    proptest! {
        /// The cache kept up to date through appends and truncations answers like a model that
        /// remembers the epoch of every offset of the log (offsets of truncated heads keep
        /// nothing, so the first retained offset starts the first epoch).
        #[test]
        fn matches_a_per_offset_model(ops in proptest::collection::vec(op(), 1..40)) {
            let mut cache = LeaderEpochCache::new();
            // Epoch of each offset in [log start, log end).
            let mut model: std::collections::BTreeMap<i64, i32> = Default::default();
            // The epoch running at the log end: it survives losing all its offsets to retention.
            let mut latest: Option<i32> = None;
            let (mut log_start, mut log_end, mut epoch) = (0i64, 0i64, 0i32);
            for op in ops {
                match op {
                    Op::Append { epoch_step, len } => {
                        epoch += epoch_step;
                        cache.assign(epoch, log_end);
                        for o in log_end..log_end + len {
                            model.insert(o, epoch);
                        }
                        log_end += len;
                        latest = Some(epoch);
                    }
                    Op::TruncateEnd(to) => {
                        let to = to.clamp(log_start, log_end);
                        cache.truncate_from_end(to);
                        model.retain(|&o, _| o < to);
                        log_end = to;
                        latest = model.values().copied().max();
                    }
                    Op::TruncateStart(to) => {
                        let to = to.clamp(log_start, log_end);
                        cache.truncate_from_start(to);
                        model.retain(|&o, _| o >= to);
                        log_start = to;
                    }
                }
                let entries = cache.entries();
                prop_assert!(entries.windows(2).all(|w| w[0].epoch < w[1].epoch
                    && w[0].start_offset < w[1].start_offset));
                prop_assert_eq!(cache.latest_epoch(), latest);
                for o in log_start..log_end {
                    prop_assert_eq!(cache.epoch_for_offset(o), model.get(&o).copied(), "offset {}", o);
                }
                for requested in -1..=epoch + 1 {
                    let expected = match latest {
                        None => EpochEndOffset::UNDEFINED,
                        Some(l) if requested < 0 || requested > l => EpochEndOffset::UNDEFINED,
                        Some(l) if requested == l => EpochEndOffset { leader_epoch: l, end_offset: log_end },
                        Some(_) => {
                            // Ends where a later epoch's first offset is (the log end when the
                            // later epoch lost all its offsets).
                            let end = model.iter().find(|&(_, &e)| e > requested).map_or(log_end, |(&o, _)| o);
                            let floor = model.values().copied().filter(|&e| e <= requested).max();
                            EpochEndOffset { leader_epoch: floor.unwrap_or(requested), end_offset: end }
                        }
                    };
                    prop_assert_eq!(cache.end_offset_for(requested, log_end), expected, "requested {}", requested);
                }
                prop_assert_eq!(decode(&encode(entries)).unwrap(), entries.to_vec());
            }
        }

        /// Arbitrary assignments (including lower epochs and earlier offsets) keep the entries
        /// strictly increasing and leave the assigned entry last.
        #[test]
        fn arbitrary_assignments_stay_ordered(
            assigns in proptest::collection::vec((0..10i32, 0..50i64), 1..30),
        ) {
            let mut cache = LeaderEpochCache::new();
            for (epoch, offset) in assigns {
                let before = cache.clone();
                let changed = cache.assign(epoch, offset);
                prop_assert_eq!(changed, before != cache);
                let entries = cache.entries();
                prop_assert!(entries.windows(2).all(|w| w[0].epoch < w[1].epoch
                    && w[0].start_offset < w[1].start_offset));
                let last = cache.latest_entry().unwrap();
                prop_assert_eq!(last.epoch, epoch);
                if changed {
                    prop_assert_eq!(last.start_offset, offset);
                    // Earlier entries that survive were untouched.
                    prop_assert!(before.entries().starts_with(&entries[..entries.len() - 1]));
                }
            }
        }
    }
}
