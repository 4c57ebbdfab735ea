//! Sparse per-segment indexes, kept in memory and written to `.index` / `.timeindex` files.
//!
//! - [`OffsetIndex`]: entries of (offset relative to the segment base, byte position of the
//!   batch in the `.log` file), 8 bytes each, big-endian, one per `index.interval.bytes`.
//! - [`TimeIndex`]: entries of (largest timestamp so far, relative offset of the record that has
//!   it), 12 bytes each, appended when the largest timestamp grows at an index point.
//!
//! Index files are derived data: they are checked on load and rebuilt from the log whenever
//! they fail a check or may be stale.

/// Size of one offset index entry on disk.
pub(crate) const OFFSET_ENTRY: usize = 8;
/// Size of one time index entry on disk.
pub(crate) const TIME_ENTRY: usize = 12;

/// Relative offset → byte position, strictly increasing in both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn append(&mut self, relative_offset: u32, position: u32) {
        if self
            .entries
            .last()
            .is_none_or(|&(o, p)| relative_offset > o && position > p)
        {
            self.entries.push((relative_offset, position));
        }
    }

    /// Position of the batch recorded for the largest indexed offset `<= relative_offset`, or 0.
    pub(crate) fn lookup(&self, relative_offset: u32) -> u32 {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        i.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map_or(0, |&(_, p)| p)
    }

    /// The last entry whose batch starts at or before `position` and whose relative offset is
    /// at most `relative_offset`.
    pub(crate) fn last_within(&self, position: u64, relative_offset: u32) -> Option<(u32, u32)> {
        let i = self
            .entries
            .partition_point(|&(o, p)| u64::from(p) <= position && o <= relative_offset);
        i.checked_sub(1).and_then(|i| self.entries.get(i)).copied()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Parses an index file for a `.log` of `log_size` bytes, refusing anything inconsistent.
    pub(crate) fn decode(bytes: &[u8], log_size: u64) -> Result<Self, &'static str> {
        if bytes.len() % OFFSET_ENTRY != 0 {
            return Err("offset index size is not a multiple of 8");
        }
        let mut index = Self::default();
        for chunk in bytes.chunks_exact(OFFSET_ENTRY) {
            let (o, p) = chunk.split_at(4);
            let o = u32::from_be_bytes(o.try_into().map_err(|_| "short entry")?);
            let p = u32::from_be_bytes(p.try_into().map_err(|_| "short entry")?);
            if u64::from(p) >= log_size {
                return Err("offset index entry points past the end of the log");
            }
            if index
                .entries
                .last()
                .is_some_and(|&(lo, lp)| o <= lo || p <= lp)
            {
                return Err("offset index entries are not increasing");
            }
            index.entries.push((o, p));
        }
        Ok(index)
    }
}

/// Largest timestamp so far → relative offset of the first record with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// Appends when `timestamp` is larger than the last entry's.
    pub(crate) fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) {
        if self
            .entries
            .last()
            .is_none_or(|&(t, o)| timestamp > t && relative_offset >= o)
        {
            self.entries.push((timestamp, relative_offset));
        }
    }

    /// The last entry whose timestamp is strictly below `timestamp`: every record before its
    /// offset is older than `timestamp`, so a search can start there.
    pub(crate) fn lookup_below(&self, timestamp: i64) -> Option<(i64, u32)> {
        let i = self.entries.partition_point(|&(t, _)| t < timestamp);
        i.checked_sub(1).and_then(|i| self.entries.get(i)).copied()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY);
        for &(t, o) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, &'static str> {
        if bytes.len() % TIME_ENTRY != 0 {
            return Err("time index size is not a multiple of 12");
        }
        let mut index = Self::default();
        for chunk in bytes.chunks_exact(TIME_ENTRY) {
            let (t, o) = chunk.split_at(8);
            let t = i64::from_be_bytes(t.try_into().map_err(|_| "short entry")?);
            let o = u32::from_be_bytes(o.try_into().map_err(|_| "short entry")?);
            if index
                .entries
                .last()
                .is_some_and(|&(lt, lo)| t <= lt || o < lo)
            {
                return Err("time index entries are not increasing");
            }
            index.entries.push((t, o));
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_and_round_trip() {
        let mut index = OffsetIndex::default();
        index.append(10, 4096);
        index.append(20, 8192);
        index.append(20, 9000); // not increasing: ignored
        assert_eq!(index.lookup(5), 0);
        assert_eq!(index.lookup(10), 4096);
        assert_eq!(index.lookup(25), 8192);
        let decoded = OffsetIndex::decode(&index.encode(), 10_000).unwrap();
        assert_eq!(decoded, index);
        assert!(OffsetIndex::decode(&index.encode(), 8192).is_err());
        assert!(OffsetIndex::decode(&[0; 7], 100).is_err());
    }

    #[test]
    fn time_index_lookup_below() {
        let mut index = TimeIndex::default();
        index.maybe_append(100, 0);
        index.maybe_append(90, 3); // older: ignored
        index.maybe_append(200, 5);
        assert_eq!(index.lookup_below(100), None);
        assert_eq!(index.lookup_below(101), Some((100, 0)));
        assert_eq!(index.lookup_below(500), Some((200, 5)));
        assert_eq!(TimeIndex::decode(&index.encode()).unwrap(), index);
        let mut bad = index.encode();
        bad.extend_from_slice(&index.encode());
        assert!(TimeIndex::decode(&bad).is_err());
    }
}
