//! The aborted-transaction index of a segment: Kafka's `<base offset>.txnindex`.
//!
//! One 34-byte big-endian entry per transaction aborted by an ABORT marker in the segment, in
//! marker order: version (i16, 0), producer id (i64), first offset of the transaction (i64),
//! offset of the marker (i64, the entry's "last offset"), and the last stable offset when the
//! marker was written (i64). A read_committed Fetch returns the entries overlapping the data it
//! returns, so the consumer can drop the aborted records (see [`crate::Log::aborted_transactions`]).
//!
//! Unlike the offset and time indexes this file is not derived from the segment alone: the
//! first offset of a transaction lies wherever its producer's first batch is, possibly many
//! segments back. So it is never rebuilt by the log; it is appended as markers are written
//! (the broker computes the entry from its producer state), fsynced by the flush that covers
//! its segment, cut durably on truncation, and checked on open: a torn partial entry, an entry
//! of an unknown version, one out of order, or one whose marker lies outside the segment (lost
//! to a crash or a truncation) ends the valid part, and the rest is cut off. An entry whose
//! marker survived a crash but which did not is restored by the broker when it rebuilds its
//! producer state from the log ([`crate::Log::add_aborted_txn`] is idempotent).

use crate::fs::{FileSystem, read_exact_at};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// File name suffix.
pub(crate) const TXN_INDEX_SUFFIX: &str = ".txnindex";
/// Size of one entry on disk.
pub(crate) const TXN_ENTRY: usize = 34;
/// The only entry version Kafka has written.
const VERSION: i16 = 0;

/// A transaction aborted on this partition, as recorded in the transaction index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AbortedTxn {
    /// The producer whose transaction it was.
    pub producer_id: i64,
    /// Offset of the transaction's first batch on this partition.
    pub first_offset: i64,
    /// Offset of the ABORT marker that ended it.
    pub last_offset: i64,
    /// The last stable offset when the marker was written: every transaction that started
    /// below it had ended by then, which lets a search stop early.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self) -> [u8; TXN_ENTRY] {
        let mut out = [0u8; TXN_ENTRY];
        let fields = VERSION
            .to_be_bytes()
            .into_iter()
            .chain(self.producer_id.to_be_bytes())
            .chain(self.first_offset.to_be_bytes())
            .chain(self.last_offset.to_be_bytes())
            .chain(self.last_stable_offset.to_be_bytes());
        for (slot, byte) in out.iter_mut().zip(fields) {
            *slot = byte;
        }
        out
    }

    /// Parses one entry; `None` for an unknown version or a short slice.
    fn decode(chunk: &[u8]) -> Option<Self> {
        let (version, rest) = chunk.split_first_chunk::<2>()?;
        if i16::from_be_bytes(*version) != VERSION {
            return None;
        }
        let (producer_id, rest) = rest.split_first_chunk::<8>()?;
        let (first_offset, rest) = rest.split_first_chunk::<8>()?;
        let (last_offset, rest) = rest.split_first_chunk::<8>()?;
        let (last_stable_offset, _) = rest.split_first_chunk::<8>()?;
        Some(Self {
            producer_id: i64::from_be_bytes(*producer_id),
            first_offset: i64::from_be_bytes(*first_offset),
            last_offset: i64::from_be_bytes(*last_offset),
            last_stable_offset: i64::from_be_bytes(*last_stable_offset),
        })
    }

    /// Whether the transaction has records in `[from, upper)`.
    fn overlaps(&self, from: i64, upper: i64) -> bool {
        self.last_offset >= from && self.first_offset < upper
    }
}

/// The entries of one segment, in marker order (strictly increasing last offsets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TxnIndex {
    entries: Vec<AbortedTxn>,
}

impl TxnIndex {
    pub(crate) fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes the entries take on disk.
    pub(crate) fn byte_len(&self) -> u64 {
        (self.entries.len() * TXN_ENTRY) as u64
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        self.entries.iter().flat_map(|e| e.encode()).collect()
    }

    /// The valid prefix of a file for a segment whose markers lie in `[base, end)`, and how many
    /// bytes of the file it takes (the rest is to be cut off).
    pub(crate) fn decode(bytes: &[u8], base: i64, end: i64) -> (Self, usize) {
        let mut index = Self::default();
        for chunk in bytes.chunks_exact(TXN_ENTRY) {
            let Some(entry) = AbortedTxn::decode(chunk) else {
                break;
            };
            let in_order = index
                .entries
                .last()
                .is_none_or(|last| entry.last_offset > last.last_offset);
            if !in_order
                || entry.last_offset < base
                || entry.last_offset >= end
                || entry.first_offset > entry.last_offset
            {
                break;
            }
            index.entries.push(entry);
        }
        let valid = index.entries.len() * TXN_ENTRY;
        (index, valid)
    }

    /// Where `entry` goes: `Ok(i)` when an entry for the same marker is there already.
    fn position(&self, entry: &AbortedTxn) -> std::result::Result<usize, usize> {
        self.entries
            .binary_search_by_key(&entry.last_offset, |e| e.last_offset)
    }

    /// Removes the entries whose marker is at or after `offset`; returns whether any went.
    pub(crate) fn truncate_from(&mut self, offset: i64) -> bool {
        let keep = self.entries.partition_point(|e| e.last_offset < offset);
        let removed = keep < self.entries.len();
        self.entries.truncate(keep);
        removed
    }

    /// Adds the entries overlapping `[from, upper)` to `out`; returns true when no later
    /// segment can hold one (an entry here was written with a last stable offset past
    /// `upper`: every transaction starting below `upper` had ended before its marker).
    pub(crate) fn collect(&self, from: i64, upper: i64, out: &mut Vec<AbortedTxn>) -> bool {
        let mut complete = false;
        for entry in &self.entries {
            if entry.overlaps(from, upper) {
                out.push(*entry);
            }
            complete |= entry.last_stable_offset > upper;
        }
        complete
    }

    /// Merges the entries of several consecutive segments (compaction merging them): sorted by
    /// marker, one entry per marker.
    pub(crate) fn merged(parts: impl IntoIterator<Item = AbortedTxn>) -> Self {
        let mut entries: Vec<AbortedTxn> = parts.into_iter().collect();
        entries.sort_by_key(|e| e.last_offset);
        entries.dedup_by_key(|e| e.last_offset);
        Self { entries }
    }
}

/// `<dir>/<20-digit base offset>.txnindex`.
pub(crate) fn path(dir: &Path, base_offset: i64) -> PathBuf {
    crate::segment::file_path(dir, base_offset, TXN_INDEX_SUFFIX)
}

/// Reads a segment's index, keeping the valid prefix for markers in `[base, end)` and cutting
/// the rest off the file durably (so the dropped entries cannot come back after a later
/// crash, when the log may have grown past their offsets again). Empty when there is no file.
pub(crate) fn load(fs: &dyn FileSystem, dir: &Path, base: i64, end: i64) -> Result<TxnIndex> {
    let path = path(dir, base);
    if !fs.exists(&path) {
        return Ok(TxnIndex::default());
    }
    let file = fs.open(&path, false).map_err(Error::io("open", &path))?;
    let len = file.len().map_err(Error::io("stat", &path))?;
    let mut bytes = vec![0; len as usize];
    read_exact_at(&*file, &mut bytes, 0).map_err(Error::io("read", &path))?;
    let (index, valid) = TxnIndex::decode(&bytes, base, end);
    if (valid as u64) < len {
        tracing::warn!(index = %path.display(), valid, len, "cutting transaction index entries that are torn, invalid or past the segment's end");
        file.set_len(valid as u64)
            .map_err(Error::io("truncate", &path))?;
        file.sync_data().map_err(Error::io("fsync", &path))?;
    }
    Ok(index)
}

/// Writes `entry` at the end of the file of `index` (creating it) and records it.
pub(crate) fn append(
    fs: &dyn FileSystem,
    dir: &Path,
    base: i64,
    index: &mut TxnIndex,
    entry: AbortedTxn,
) -> Result<PathBuf> {
    let path = path(dir, base);
    let created = !fs.exists(&path);
    let file = fs.open(&path, true).map_err(Error::io("create", &path))?;
    file.write_all_at(&entry.encode(), index.byte_len())
        .map_err(Error::io("write", &path))?;
    if created {
        // The entry is fsynced with the segment's next flush; the new name must be durable by
        // then too.
        fs.sync_dir(dir)
            .map_err(Error::io("fsync directory", dir))?;
    }
    index.entries.push(entry);
    Ok(path)
}

/// Adds `entry` to a segment's index unless an entry for its marker is there: at the end with
/// one write, elsewhere (a restored entry, rare) by rewriting the file atomically. Returns the
/// path to fsync when the entry was appended, and whether anything changed.
pub(crate) fn insert(
    fs: &dyn FileSystem,
    dir: &Path,
    base: i64,
    index: &mut TxnIndex,
    entry: AbortedTxn,
) -> Result<(bool, Option<PathBuf>)> {
    match index.position(&entry) {
        Ok(_) => Ok((false, None)),
        Err(at) if at == index.entries.len() => {
            append(fs, dir, base, index, entry).map(|p| (true, Some(p)))
        }
        Err(at) => {
            index.entries.insert(at, entry);
            write_atomically(fs, dir, base, index)?;
            Ok((true, None))
        }
    }
}

/// Replaces a segment's index file with `index` ([`crate::fs::write_atomically`]: temp file,
/// fsync, rename, directory fsync); removes the file when `index` is empty.
pub(crate) fn write_atomically(
    fs: &dyn FileSystem,
    dir: &Path,
    base: i64,
    index: &TxnIndex,
) -> Result<()> {
    let path = path(dir, base);
    if index.is_empty() {
        return remove(fs, dir, base);
    }
    crate::fs::write_atomically(fs, &path, &index.encode())
}

/// Cuts a segment's index file to the entries left in `index`, durably.
pub(crate) fn cut(fs: &dyn FileSystem, dir: &Path, base: i64, index: &TxnIndex) -> Result<()> {
    let path = path(dir, base);
    if !fs.exists(&path) {
        return Ok(());
    }
    let file = fs.open(&path, false).map_err(Error::io("open", &path))?;
    file.set_len(index.byte_len())
        .map_err(Error::io("truncate", &path))?;
    file.sync_data().map_err(Error::io("fsync", &path))
}

/// Removes a segment's index file if there is one.
pub(crate) fn remove(fs: &dyn FileSystem, dir: &Path, base: i64) -> Result<()> {
    let path = path(dir, base);
    if fs.exists(&path) {
        fs.remove_file(&path).map_err(Error::io("remove", &path))?;
    }
    Ok(())
}

/// Folds the index files of the segments `others` into the one of `first` (a compaction swap
/// merging them), keeping the entries `keep` accepts (compaction removes the markers of
/// transactions without data, and their entries with them), so the merged segment's file
/// holds every surviving entry before the others' files are removed. Idempotent: a crash
/// anywhere leaves files that the same call completes. Returns the merged index.
pub(crate) fn merge_into(
    fs: &dyn FileSystem,
    dir: &Path,
    first: i64,
    others: &[i64],
    keep: impl Fn(&AbortedTxn) -> bool,
) -> Result<TxnIndex> {
    let mut parts = Vec::new();
    let mut changed = false;
    for &base in std::iter::once(&first).chain(others) {
        let index = load(fs, dir, base, i64::MAX)?;
        changed |= base != first && !index.is_empty();
        for entry in index.entries() {
            if keep(entry) {
                parts.push(*entry);
            } else {
                changed = true;
            }
        }
    }
    let merged = TxnIndex::merged(parts);
    if changed {
        write_atomically(fs, dir, first, &merged)?;
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultFs;

    fn txn(producer_id: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn entries_have_kafkas_34_byte_layout() {
        let bytes = txn(0x0102, 3, 9, 10).encode();
        assert_eq!(bytes.len(), 34);
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &0x0102i64.to_be_bytes());
        assert_eq!(&bytes[10..18], &3i64.to_be_bytes());
        assert_eq!(&bytes[18..26], &9i64.to_be_bytes());
        assert_eq!(&bytes[26..34], &10i64.to_be_bytes());
        assert_eq!(AbortedTxn::decode(&bytes), Some(txn(0x0102, 3, 9, 10)));
    }

    #[test]
    fn decode_keeps_the_valid_prefix() {
        let good = TxnIndex {
            entries: vec![txn(1, 0, 5, 6), txn(2, 3, 8, 9)],
        };
        let mut bytes = good.encode();
        assert_eq!(TxnIndex::decode(&bytes, 0, 100), (good.clone(), 68));
        // A torn entry at the end.
        bytes.extend_from_slice(&txn(3, 9, 12, 13).encode()[..20]);
        assert_eq!(TxnIndex::decode(&bytes, 0, 100).1, 68);
        // A marker past the segment's end.
        assert_eq!(TxnIndex::decode(&bytes, 0, 8).1, 34);
        // An unknown version, and entries out of order.
        let mut bad = good.encode();
        bad[34] = 1;
        assert_eq!(TxnIndex::decode(&bad, 0, 100).1, 34);
        let backwards = TxnIndex {
            entries: vec![txn(2, 3, 8, 9), txn(1, 0, 5, 6)],
        };
        assert_eq!(TxnIndex::decode(&backwards.encode(), 0, 100).1, 34);
    }

    #[test]
    fn collect_overlap_and_completeness() {
        let index = TxnIndex {
            entries: vec![txn(1, 0, 5, 3), txn(2, 3, 8, 20)],
        };
        let mut out = Vec::new();
        // [6, 10): only the second overlaps; its LSO (20) passes 10, so the search is done.
        assert!(index.collect(6, 10, &mut out));
        assert_eq!(out, vec![txn(2, 3, 8, 20)]);
        out.clear();
        // [0, 3): only the first (the second's LSO, 20, ends the search).
        assert!(index.collect(0, 3, &mut out));
        assert_eq!(out, vec![txn(1, 0, 5, 3)]);
        out.clear();
        // No entry's LSO passes 25: later segments may hold more.
        assert!(!index.collect(0, 25, &mut out));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn insert_is_idempotent_and_keeps_order() {
        let fs = FaultFs::new();
        let dir = Path::new("/d/t-0");
        fs.create_dir_all(dir).unwrap();
        let mut index = TxnIndex::default();
        assert!(insert(&fs, dir, 0, &mut index, txn(1, 0, 5, 6)).unwrap().0);
        assert!(insert(&fs, dir, 0, &mut index, txn(2, 0, 9, 10)).unwrap().0);
        assert!(!insert(&fs, dir, 0, &mut index, txn(2, 0, 9, 10)).unwrap().0);
        // A restored entry in the middle rewrites the file.
        assert!(insert(&fs, dir, 0, &mut index, txn(3, 6, 7, 8)).unwrap().0);
        let on_disk = load(&fs, dir, 0, 100).unwrap();
        assert_eq!(on_disk, index);
        assert_eq!(
            on_disk
                .entries()
                .iter()
                .map(|e| e.last_offset)
                .collect::<Vec<_>>(),
            vec![5, 7, 9]
        );
    }

    #[test]
    fn load_cuts_the_invalid_tail_durably() {
        let fs = FaultFs::new();
        let dir = Path::new("/d/t-0");
        fs.create_dir_all(dir).unwrap();
        let mut index = TxnIndex::default();
        append(&fs, dir, 10, &mut index, txn(1, 10, 12, 13)).unwrap();
        append(&fs, dir, 10, &mut index, txn(1, 14, 20, 21)).unwrap();
        fs.open(&path(dir, 10), false).unwrap().sync_data().unwrap();
        fs.sync_dir(dir).unwrap();
        // The log now ends at 15: the second marker is gone.
        let loaded = load(&fs, dir, 10, 15).unwrap();
        assert_eq!(loaded.entries(), &[txn(1, 10, 12, 13)]);
        // The cut survives a crash.
        let crashed = fs.crash();
        assert_eq!(crashed.read_all(&path(dir, 10)).unwrap().len(), 34);
    }

    #[test]
    fn merge_folds_other_segments_in_idempotently() {
        let fs = FaultFs::new();
        let dir = Path::new("/d/t-0");
        fs.create_dir_all(dir).unwrap();
        let (mut a, mut b) = (TxnIndex::default(), TxnIndex::default());
        append(&fs, dir, 0, &mut a, txn(1, 0, 4, 5)).unwrap();
        append(&fs, dir, 10, &mut b, txn(2, 2, 12, 13)).unwrap();
        let merged = merge_into(&fs, dir, 0, &[10], |_| true).unwrap();
        assert_eq!(merged.entries(), &[txn(1, 0, 4, 5), txn(2, 2, 12, 13)]);
        // Again, as recovery would after a crash before the other file went: the same.
        assert_eq!(merge_into(&fs, dir, 0, &[10], |_| true).unwrap(), merged);
        remove(&fs, dir, 10).unwrap();
        assert_eq!(merge_into(&fs, dir, 0, &[10], |_| true).unwrap(), merged);
        assert_eq!(load(&fs, dir, 0, 100).unwrap(), merged);
    }
}
