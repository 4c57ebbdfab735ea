//! Compaction for `cleanup.policy=compact`: keep the latest record per key, drop tombstones
//! once their delete horizon has passed, never renumber offsets.
//!
//! A pass is driven by the caller ([`crate::Log::compact`]) and is deterministic: it reads the
//! clock once and touches only inactive segments wholly below the given offset whose records
//! are all older than `min.compaction.lag.ms` (the *cleanable* range). It runs in three phases
//! so appends and reads continue meanwhile: [`plan`] under the log's lock, [`clean`] without it
//! (inactive segments never change), [`swap`] under the lock again, discarding the work if a
//! truncation or deletion changed the segments in between.
//!
//! As in Kafka, the log below the cleaner checkpoint (the first *dirty* offset) already holds
//! one record per key. A pass builds a key → latest offset map over the dirty part only, within
//! a memory budget (`log.cleaner.dedupe.buffer.size`); where the budget runs out, at a batch
//! boundary, the pass ends, and the next pass continues from there. Every segment below that end
//! is rewritten against the map: a record stays when no later record of its key was mapped.
//!
//! Tombstones follow KIP-534: the first pass that keeps a tombstone stamps its batch with a
//! delete horizon (`now + delete.retention.ms`, stored as the batch's base timestamp with
//! attribute bit 6); passes after the horizon drop the batch's tombstones. A consumer reading
//! from the start within `delete.retention.ms` of the first cleaning therefore sees them.
//!
//! Transactions (as Kafka): data batches of aborted transactions (known from the transaction
//! indexes) are left out of the key map, so they never supersede committed records, and are
//! removed. A marker (control batch) goes once no data of its transaction is left in the log,
//! in two steps as a tombstone does: the first pass that finds its transaction empty stamps it
//! with a delete horizon, a pass after the horizon removes it, so a consumer that read the
//! transaction's data within `delete.retention.ms` still gets its marker. The transaction
//! index entry of a removed ABORT marker goes with it (an entry without its marker would make
//! read_committed consumers skip the producer's later committed batches); the merged
//! segment's index keeps exactly the entries whose markers the segment still holds, on the
//! normal path and when a swap interrupted by a crash is completed on open.
//! The caller bounds a pass by the last stable offset, so no undecided transaction is cleaned.
//!
//! Small adjacent segments are merged: the segments of a pass are grouped while their combined
//! size fits `segment.bytes`, their index entries fit `segment.index.bytes` and their offsets fit
//! relative to the first base; each group becomes one segment. A group's output replaces its
//! members through a swap that survives a crash at any point: the new bytes go to
//! `<base>.log.cleaned` (fsynced), which is renamed to `<base>.log.swap` (one member) or
//! `<base>-<last member base>.log.swap`; then the old index files and the other members are
//! removed, the swap file is renamed over `<base>.log`, and new index files are put in place
//! atomically. On open, a `.cleaned` file is discarded and a `.swap` file completes its swap.

use crate::config::LogConfig;
use crate::fs::{FileSystem, read_exact_at};
use crate::handles::{HandleCache, SegmentFile};
use crate::index::{OFFSET_ENTRY, TIME_ENTRY};
use crate::segment::{self, LOG_SUFFIX, Segment, file_path};
use crate::txn_index;
use crate::{Error, Result};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weir_records::batch::BatchHeader;
use weir_records::{Record, RecordBatch, RecordBatchBuilder, TimestampType, batch};

pub(crate) const CLEANED_SUFFIX: &str = ".log.cleaned";
pub(crate) const SWAP_SUFFIX: &str = ".log.swap";

/// Kafka's default `log.cleaner.dedupe.buffer.size`: memory for a pass's key → offset map.
pub const DEFAULT_DEDUPE_BUFFER_SIZE: usize = 128 << 20;

/// What a map entry costs beyond its key bytes: the boxed slice, the offset and the hash
/// table's share (a conservative estimate, so the budget errs on the safe side).
const MAP_ENTRY_OVERHEAD: usize = 48;

/// What a compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Segments rewritten.
    pub segments: usize,
    /// Segments they became (fewer when small adjacent ones were merged).
    pub segments_after: usize,
    /// Their size before.
    pub bytes_before: u64,
    /// Their size after.
    pub bytes_after: u64,
    /// Records removed (superseded values and expired tombstones).
    pub records_removed: u64,
    /// Where the pass ended: below it the log holds one record per key. This is the cleaner
    /// checkpoint, where the next pass starts its map.
    pub cleaned_up_to: i64,
    /// Earliest delete horizon of a tombstone left in the cleaned range, -1 when none.
    pub delete_horizon: i64,
}

/// Parses a swap file name: `<base>.log.swap` replaces segment `base`, and
/// `<base>-<last>.log.swap` every segment with a base in `[base, last]`.
fn parse_swap_name(name: &str) -> Option<(i64, i64)> {
    let stem = name.strip_suffix(SWAP_SUFFIX)?;
    let (first, last) = stem.split_once('-').unwrap_or((stem, stem));
    let parse = |digits: &str| -> Option<i64> {
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let (first, last) = (parse(first)?, parse(last)?);
    (first <= last).then_some((first, last))
}

fn swap_path(dir: &Path, first: i64, last: i64) -> PathBuf {
    if first == last {
        file_path(dir, first, SWAP_SUFFIX)
    } else {
        dir.join(format!("{first:020}-{last:020}{SWAP_SUFFIX}"))
    }
}

/// Removes the index files of `first` and every file of the other segments a swap replaces.
fn remove_replaced(fs: &dyn FileSystem, dir: &Path, first: i64, others: &[i64]) -> Result<()> {
    segment::remove_index_files(fs, dir, first)?;
    for &base in others {
        // The .log goes first: an index without its segment is removed as a leftover on open.
        let path = file_path(dir, base, LOG_SUFFIX);
        if fs.exists(&path) {
            fs.remove_file(&path).map_err(Error::io("remove", &path))?;
        }
        segment::remove_index_files(fs, dir, base)?;
        txn_index::remove(fs, dir, base)?;
    }
    Ok(())
}

/// Finishes or discards compaction swaps interrupted by a crash; called before segments load.
pub(crate) fn recover_swaps(fs: &dyn FileSystem, dir: &Path, names: &[String]) -> Result<bool> {
    let mut changed = false;
    let bases: Vec<i64> = names
        .iter()
        .filter_map(|n| segment::parse_file_name(n, LOG_SUFFIX))
        .collect();
    for name in names {
        if name.ends_with(CLEANED_SUFFIX) {
            let path = dir.join(name);
            fs.remove_file(&path).map_err(Error::io("remove", &path))?;
            changed = true;
        } else if let Some((first, last)) = parse_swap_name(name) {
            let swap = dir.join(name);
            let others: Vec<i64> = bases
                .iter()
                .copied()
                .filter(|&b| b > first && b <= last)
                .collect();
            // The merged segment's transaction index must hold the others' entries before
            // their files go (see `txn_index::merge_into`), except those whose markers the
            // pass removed.
            let markers = markers_in(fs, &swap)?;
            txn_index::merge_into(fs, dir, first, &others, |e| {
                markers.contains(&(e.producer_id, e.last_offset))
            })?;
            remove_replaced(fs, dir, first, &others)?;
            let log = file_path(dir, first, LOG_SUFFIX);
            fs.rename(&swap, &log).map_err(Error::io("rename", &swap))?;
            tracing::info!(segment = %log.display(), replaced = others.len() + 1, "completed an interrupted compaction swap");
            changed = true;
        }
    }
    if changed {
        fs.sync_dir(dir)
            .map_err(Error::io("fsync directory", dir))?;
    }
    Ok(changed)
}

/// (producer id, offset) of every control batch in a segment file.
fn markers_in(fs: &dyn FileSystem, path: &Path) -> Result<HashSet<(i64, i64)>> {
    let size = fs
        .open(path, false)
        .and_then(|f| f.len())
        .map_err(Error::io("read segment", path))?;
    let whole = Planned {
        base: 0,
        path: path.to_path_buf(),
        size,
        end: i64::MAX,
        next_offset: i64::MAX,
    };
    let mut markers = HashSet::new();
    for_each_batch(fs, &whole, |header, _| {
        if header.attributes.is_control() {
            markers.insert((header.producer_id, header.base_offset));
        }
        Ok(true)
    })?;
    Ok(markers)
}

/// An inactive segment chosen for a pass, captured so the pass can read it without the lock.
/// Its file is opened only while the pass reads it, so a pass over many segments stays within
/// a few open files.
pub(crate) struct Planned {
    base: i64,
    path: PathBuf,
    size: u64,
    /// Where the segment's offsets end (the next segment's base).
    end: i64,
    /// Offset after its last batch as the log knows it.
    next_offset: i64,
}

/// The cleanable range of a log, captured under its lock.
pub(crate) struct Plan {
    segments: Vec<Planned>,
    /// Consecutive segments that fit in one output segment.
    groups: Vec<Range<usize>>,
    /// The cleaner checkpoint: the map starts here.
    first_dirty: i64,
    /// End of the cleanable range.
    end: i64,
    /// Aborted transactions by producer: (first offset, marker offset), from the transaction
    /// indexes of every segment (a marker may lie past the cleanable range).
    aborted: HashMap<i64, Vec<(i64, i64)>>,
}

impl Plan {
    /// Whether `header` is a data batch of an aborted transaction: such batches are dropped and
    /// never supersede other records of their keys, as in Kafka. (The caller cleans only below
    /// the last stable offset, so every transactional batch in range has its marker.)
    fn is_aborted(&self, header: &BatchHeader) -> bool {
        header.attributes.is_transactional()
            && !header.attributes.is_control()
            && self.aborted.get(&header.producer_id).is_some_and(|ranges| {
                ranges
                    .iter()
                    .any(|&(first, last)| first <= header.base_offset && header.base_offset <= last)
            })
    }

    /// Whether a pass would change anything: dirty data to map, tombstones whose horizon
    /// passed, or segments to merge.
    pub(crate) fn has_work(&self, horizon_due: bool) -> bool {
        !self.segments.is_empty()
            && (self.first_dirty < self.end
                || horizon_due
                || self.groups.len() < self.segments.len())
    }
}

/// A rewritten group of segments, fsynced as `<base>.log.cleaned`, waiting for its swap.
pub(crate) struct Cleaned {
    segment: Segment,
    cleaned_path: PathBuf,
    /// Base offsets of the segments it replaces, the first being its own.
    members: Vec<i64>,
    /// (producer id, offset) of the markers the pass removed: their transaction index entries
    /// go too.
    removed_markers: HashSet<(i64, i64)>,
}

/// Calls `visit(header, bytes)` for every whole batch of a planned segment, reading one batch
/// at a time, until it returns false.
fn for_each_batch(
    fs: &dyn FileSystem,
    p: &Planned,
    mut visit: impl FnMut(&BatchHeader, Bytes) -> Result<bool>,
) -> Result<()> {
    let io = || Error::io("read segment", &p.path);
    let file = fs.open(&p.path, false).map_err(io())?;
    let mut position = 0u64;
    while let Some(header) = segment::read_header(&*file, position, p.size).map_err(io())? {
        let size = header.size() as u64;
        if position + size > p.size {
            break;
        }
        let mut buf = BytesMut::zeroed(header.size());
        read_exact_at(&*file, &mut buf, position).map_err(io())?;
        if !visit(&header, buf.freeze())? {
            break;
        }
        position += size;
    }
    Ok(())
}

/// Phase 1, under the log's lock: the inactive segments wholly below `clean_below` whose
/// records are all older than `min.compaction.lag.ms`, grouped for merging, with the map
/// starting at `cleaned_up_to`.
pub(crate) fn plan(
    segments: &BTreeMap<i64, Segment>,
    clean_below: i64,
    now: i64,
    config: &LogConfig,
    cleaned_up_to: i64,
) -> Result<Plan> {
    let bases: Vec<i64> = segments.keys().copied().collect();
    let mut planned = Vec::new();
    let mut groups = Vec::new();
    let mut end = bases.first().copied().unwrap_or(0);
    let index_capacity = config.segment_index_bytes as usize / OFFSET_ENTRY;
    let time_capacity = config.segment_index_bytes as usize / TIME_ENTRY;
    // Running totals of the current group: bytes, offset and time index entries.
    let (mut start, mut bytes, mut entries, mut time_entries) = (0usize, 0u64, 0usize, 0usize);
    for (i, &base) in bases.iter().enumerate() {
        let Some(&next) = bases.get(i + 1) else { break };
        let Some(segment) = segments.get(&base) else {
            break;
        };
        if next > clean_below
            || segment.max_timestamp > now.saturating_sub(config.min_compaction_lag_ms)
        {
            break;
        }
        let group_base = planned.get(start).map_or(base, |p: &Planned| p.base);
        // Sizes before cleaning bound the output, so a group never outgrows one segment.
        let fits = bytes + segment.size <= u64::from(config.segment_bytes)
            && entries + segment.index.len() < index_capacity
            && time_entries + segment.time_index.len() < time_capacity
            && next - 1 - group_base <= i64::from(i32::MAX);
        if planned.len() > start && !fits {
            groups.push(start..planned.len());
            start = planned.len();
            (bytes, entries, time_entries) = (0, 0, 0);
        }
        bytes += segment.size;
        entries += segment.index.len() + 1;
        time_entries += segment.time_index.len() + 1;
        planned.push(Planned {
            base,
            path: segment.path.clone(),
            size: segment.size,
            end: next,
            next_offset: segment.next_offset,
        });
        end = next;
    }
    if planned.len() > start {
        groups.push(start..planned.len());
    }
    let first_dirty = cleaned_up_to.max(bases.first().copied().unwrap_or(0));
    let mut aborted: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    for entry in segments.values().flat_map(|s| s.txn_index.entries()) {
        if entry.first_offset < end {
            aborted
                .entry(entry.producer_id)
                .or_default()
                .push((entry.first_offset, entry.last_offset));
        }
    }
    Ok(Plan {
        segments: planned,
        groups,
        first_dirty,
        end,
        aborted,
    })
}

/// The records of a batch, or `None` when they cannot be decoded (such batches are kept whole
/// and not mapped).
fn decode(bytes: &Bytes) -> Option<Vec<Record>> {
    let batch = RecordBatch::new(bytes.clone()).ok()?;
    batch.records().ok()?.collect::<Result<_, _>>().ok()
}

/// Key → offset of its latest record in the mapped range.
type OffsetMap = HashMap<Box<[u8]>, i64>;

/// Builds the key → latest offset map over the dirty part of the plan within `budget` bytes.
/// Returns it with the offset where mapping stopped (a batch boundary, or the plan's end).
fn build_map(fs: &dyn FileSystem, plan: &Plan, budget: usize) -> Result<(OffsetMap, i64)> {
    let mut map = OffsetMap::new();
    let mut used = 0usize;
    let mut stop = None;
    for p in plan.segments.iter().filter(|p| p.end > plan.first_dirty) {
        for_each_batch(fs, p, |header, bytes| {
            if header.last_offset() < plan.first_dirty
                || header.attributes.is_control()
                || plan.is_aborted(header)
            {
                return Ok(true);
            }
            let Some(records) = decode(&bytes) else {
                return Ok(true);
            };
            // What the batch's new keys would cost; the first batch always goes in, so every
            // pass makes progress.
            let mut fresh: HashSet<&[u8]> = HashSet::new();
            let mut cost = 0;
            for key in records.iter().filter_map(|r| r.key.as_deref()) {
                if !map.contains_key(key) && fresh.insert(key) {
                    cost += key.len() + MAP_ENTRY_OVERHEAD;
                }
            }
            if used + cost > budget && !map.is_empty() {
                stop = Some(header.base_offset);
                return Ok(false);
            }
            used += cost;
            for record in &records {
                if let Some(key) = &record.key {
                    map.insert(Box::from(&key[..]), record.offset);
                }
            }
            Ok(true)
        })?;
        if let Some(stop) = stop {
            return Ok((map, stop));
        }
    }
    Ok((map, plan.end))
}

/// Phase 2, without the lock: maps the dirty part, then writes each group's surviving batches
/// to `<first base>.log.cleaned`, fsynced.
pub(crate) fn clean(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    plan: &Plan,
    now: i64,
    config: &LogConfig,
    dedupe_buffer_size: usize,
    stats: &mut CompactionStats,
) -> Result<Vec<Cleaned>> {
    let (map, map_end) = build_map(&**fs, plan, dedupe_buffer_size)?;
    stats.cleaned_up_to = map_end;
    let new_horizon = now.saturating_add(config.delete_retention_ms.max(0));
    let mut horizon: Option<i64> = None;
    let mut out = Vec::new();
    // Producers whose current transaction (since their last marker) still has data in the
    // log. The pass reads the log from its first segment, so every batch of a transaction
    // whose marker it reaches has been seen.
    let mut with_data: HashSet<i64> = HashSet::new();
    for group in &plan.groups {
        let members: Vec<&Planned> = plan
            .segments
            .get(group.clone())
            .unwrap_or_default()
            .iter()
            .filter(|p| p.base < map_end)
            .collect();
        let (Some(first), Some(last)) = (members.first(), members.last()) else {
            continue;
        };
        let cleaned_path = file_path(dir, first.base, CLEANED_SUFFIX);
        let file = fs
            .open(&cleaned_path, true)
            .map_err(Error::io("create", &cleaned_path))?;
        file.set_len(0)
            .map_err(Error::io("truncate", &cleaned_path))?;
        let mut cleaned = Segment::empty(
            first.base,
            SegmentFile::pinned(fs, file_path(dir, first.base, LOG_SUFFIX), file.clone()),
        );
        let mut position = 0u64;
        let mut removed_markers = HashSet::new();
        for p in &members {
            for_each_batch(&**fs, p, |header, bytes| {
                let outcome = if header.base_offset >= map_end {
                    // Past the map: a later pass cleans it.
                    Cleaning::keep(bytes, header)
                } else if plan.is_aborted(header) {
                    // Aborted data no consumer reads committed.
                    Cleaning {
                        bytes: None,
                        removed: u64::try_from(header.record_count).unwrap_or(0),
                        horizon: None,
                    }
                } else if header.attributes.is_control() {
                    let has_data = with_data.remove(&header.producer_id);
                    let outcome = clean_marker(header, bytes, has_data, now, new_horizon)?;
                    if outcome.bytes.is_none() {
                        removed_markers.insert((header.producer_id, header.base_offset));
                    }
                    outcome
                } else {
                    clean_batch(header, bytes, &map, now, new_horizon)?
                };
                if header.attributes.is_transactional()
                    && !header.attributes.is_control()
                    && outcome.bytes.is_some()
                {
                    with_data.insert(header.producer_id);
                }
                stats.records_removed += outcome.removed;
                if let Some(h) = outcome.horizon {
                    horizon = Some(horizon.map_or(h, |x: i64| x.min(h)));
                }
                let Some(keep) = outcome.bytes else {
                    return Ok(true);
                };
                let kept = BatchHeader::parse(&keep).map_err(|source| Error::InvalidBatch {
                    position: 0,
                    source,
                })?;
                file.write_all_at(&keep, position)
                    .map_err(Error::io("write", &cleaned_path))?;
                cleaned.track_batch(
                    position,
                    keep.len() as u64,
                    kept.last_offset(),
                    kept.max_timestamp,
                    kept.last_offset(),
                    config.index_interval_bytes,
                );
                position += keep.len() as u64;
                Ok(true)
            })?;
            stats.segments += 1;
            stats.bytes_before += p.size;
        }
        file.sync_data()
            .map_err(Error::io("fsync", &cleaned_path))?;
        // Offsets are never renumbered: the output ends where its last member ended.
        cleaned.next_offset = last.next_offset.max(cleaned.next_offset);
        cleaned.size = position;
        stats.bytes_after += position;
        stats.segments_after += 1;
        out.push(Cleaned {
            segment: cleaned,
            cleaned_path,
            members: members.iter().map(|p| p.base).collect(),
            removed_markers,
        });
    }
    stats.delete_horizon = horizon.unwrap_or(-1);
    Ok(out)
}

/// Phase 3, under the lock again: replaces each group's members with its cleaned segment
/// through the crash-safe swap, or discards the cleaned files when `still_valid` is false (the
/// log was truncated or lost segments meanwhile).
pub(crate) fn swap(
    fs: &Arc<dyn FileSystem>,
    handles: &HandleCache,
    dir: &Path,
    cleaned: Vec<Cleaned>,
    segments: &mut BTreeMap<i64, Segment>,
    still_valid: bool,
) -> Result<()> {
    for Cleaned {
        segment: mut cleaned,
        cleaned_path,
        members,
        removed_markers,
    } in cleaned
    {
        let (Some(&first), Some(&last)) = (members.first(), members.last()) else {
            continue;
        };
        if !still_valid || !members.iter().all(|b| segments.contains_key(b)) {
            fs.remove_file(&cleaned_path)
                .map_err(Error::io("remove", &cleaned_path))?;
            continue;
        }
        let swap = swap_path(dir, first, last);
        fs.rename(&cleaned_path, &swap)
            .map_err(Error::io("rename", &cleaned_path))?;
        fs.sync_dir(dir)
            .map_err(Error::io("fsync directory", dir))?;
        let others = members.get(1..).unwrap_or_default();
        cleaned.txn_index = txn_index::merge_into(&**fs, dir, first, others, |e| {
            !removed_markers.contains(&(e.producer_id, e.last_offset))
        })?;
        remove_replaced(&**fs, dir, first, others)?;
        fs.sync_dir(dir)
            .map_err(Error::io("fsync directory", dir))?;
        fs.rename(&swap, &cleaned.path)
            .map_err(Error::io("rename", &swap))?;
        cleaned.write_index_files_atomically(&**fs, dir)?;
        fs.sync_dir(dir)
            .map_err(Error::io("fsync directory", dir))?;
        cleaned.file.unpin(handles, false);
        for base in &members {
            segments.remove(base);
        }
        segments.insert(first, cleaned);
    }
    Ok(())
}

/// What cleaning did to one batch.
struct Cleaning {
    /// The bytes to keep, `None` when no record survives.
    bytes: Option<Bytes>,
    /// Records removed.
    removed: u64,
    /// Delete horizon of the kept batch while it holds tombstones.
    horizon: Option<i64>,
}

impl Cleaning {
    fn keep(bytes: Bytes, header: &BatchHeader) -> Self {
        Self {
            bytes: Some(bytes),
            removed: 0,
            horizon: header
                .attributes
                .has_delete_horizon()
                .then_some(header.base_timestamp),
        }
    }
}

/// Cleans a marker below the map's end: kept while its transaction has data in the log;
/// otherwise stamped with a delete horizon by the first pass, and removed by a pass after it.
fn clean_marker(
    header: &BatchHeader,
    bytes: Bytes,
    has_data: bool,
    now: i64,
    new_horizon: i64,
) -> Result<Cleaning> {
    let has_horizon = header.attributes.has_delete_horizon();
    if has_data {
        return Ok(Cleaning::keep(bytes, header));
    }
    if has_horizon && now >= header.base_timestamp {
        return Ok(Cleaning {
            bytes: None,
            removed: u64::try_from(header.record_count).unwrap_or(0),
            horizon: None,
        });
    }
    if has_horizon {
        return Ok(Cleaning::keep(bytes, header));
    }
    let Some(records) = decode(&bytes) else {
        return Ok(Cleaning::keep(bytes, header));
    };
    Ok(Cleaning {
        bytes: Some(rebuild(header, records, Some(new_horizon))?),
        removed: 0,
        horizon: Some(new_horizon),
    })
}

/// Cleans one batch below the map's end: a record goes when a later record of its key was
/// mapped, and a tombstone when its batch's delete horizon has passed. A batch that keeps a
/// tombstone and has no horizon yet gets `new_horizon`.
fn clean_batch(
    header: &BatchHeader,
    bytes: Bytes,
    map: &OffsetMap,
    now: i64,
    new_horizon: i64,
) -> Result<Cleaning> {
    let Some(records) = decode(&bytes) else {
        return Ok(Cleaning::keep(bytes, header));
    };
    let has_horizon = header.attributes.has_delete_horizon();
    let horizon_passed = has_horizon && now >= header.base_timestamp;
    let total = records.len();
    let retained: Vec<Record> = records
        .into_iter()
        .filter(|r| match &r.key {
            None => true,
            Some(key) => {
                map.get(&key[..]).is_none_or(|&latest| latest <= r.offset)
                    && !(r.value.is_none() && horizon_passed)
            }
        })
        .collect();
    let removed = (total - retained.len()) as u64;
    let tombstones = retained
        .iter()
        .any(|r| r.key.is_some() && r.value.is_none());
    if removed == 0 && (has_horizon || !tombstones) {
        return Ok(Cleaning {
            bytes: Some(bytes),
            removed: 0,
            horizon: tombstones.then_some(header.base_timestamp),
        });
    }
    if retained.is_empty() {
        return Ok(Cleaning {
            bytes: None,
            removed,
            horizon: None,
        });
    }
    let horizon = tombstones.then_some(if has_horizon {
        header.base_timestamp
    } else {
        new_horizon
    });
    Ok(Cleaning {
        bytes: Some(rebuild(header, retained, horizon)?),
        removed,
        horizon,
    })
}

/// The batch of `header` again with only `retained` of its records, at the same offsets, with
/// `horizon` as its delete horizon when given.
fn rebuild(header: &BatchHeader, retained: Vec<Record>, horizon: Option<i64>) -> Result<Bytes> {
    let invalid = |source| Error::InvalidBatch {
        position: 0,
        source,
    };
    let mut builder = RecordBatchBuilder::new();
    builder
        .base_offset(header.base_offset)
        .partition_leader_epoch(header.partition_leader_epoch)
        .producer(
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
        )
        .compression(header.attributes.compression().map_err(invalid)?)
        .transactional(header.attributes.is_transactional())
        .control(header.attributes.is_control())
        .timestamp_type(header.attributes.timestamp_type())
        .preserve_offsets(header.last_offset_delta);
    if let Some(horizon) = horizon {
        builder.delete_horizon(horizon);
    }
    for record in retained {
        builder.push(record);
    }
    let rebuilt = builder.build().map_err(invalid)?;
    if header.attributes.timestamp_type() == TimestampType::LogAppendTime {
        let mut bytes = rebuilt.to_vec();
        batch::set_log_append_time(&mut bytes, header.max_timestamp).map_err(invalid)?;
        Ok(Bytes::from(bytes))
    } else {
        Ok(rebuilt)
    }
}
