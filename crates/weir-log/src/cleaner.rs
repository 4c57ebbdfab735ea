//! Compaction for `cleanup.policy=compact`: keep the latest record per key, drop tombstones
//! older than `delete.retention.ms`, never renumber offsets.
//!
//! A pass is driven by the caller ([`crate::Log::compact`]) and is deterministic: it reads the
//! clock once and touches only inactive segments wholly below the given offset whose records
//! are all older than `min.compaction.lag.ms`. It runs in three phases so appends and reads
//! continue meanwhile: [`plan`] under the log's lock, [`clean`] without it (inactive segments
//! never change), [`swap`] under the lock again, discarding the work if a truncation or
//! deletion changed the segments in between.
//!
//! Each cleaned segment replaces its original through a swap that survives a crash at any
//! point: the new bytes go to `<base>.log.cleaned` (fsynced), which is renamed to
//! `<base>.log.swap`; then the old index files are removed, the swap file is renamed over
//! `<base>.log`, and new index files are put in place atomically. On open, a `.cleaned` file is
//! discarded and a `.swap` file completes its swap.

use crate::config::LogConfig;
use crate::fs::{File, FileSystem, read_exact_at};
use crate::handles::{HandleCache, SegmentFile};
use crate::segment::{self, LOG_SUFFIX, Segment, file_path};
use crate::{Error, Result};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weir_records::batch::BatchHeader;
use weir_records::{RecordBatch, RecordBatchBuilder, TimestampType, batch};

pub(crate) const CLEANED_SUFFIX: &str = ".log.cleaned";
pub(crate) const SWAP_SUFFIX: &str = ".log.swap";

/// What a compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Segments rewritten.
    pub segments: usize,
    /// Their size before.
    pub bytes_before: u64,
    /// Their size after.
    pub bytes_after: u64,
    /// Records removed (superseded values and expired tombstones).
    pub records_removed: u64,
    /// Base offset of the first segment the pass left alone; below it the log is compacted.
    pub cleaned_up_to: i64,
}

/// Finishes or discards compaction swaps interrupted by a crash; called before segments load.
pub(crate) fn recover_swaps(fs: &dyn FileSystem, dir: &Path, names: &[String]) -> Result<bool> {
    let mut changed = false;
    for name in names {
        if name.ends_with(CLEANED_SUFFIX) {
            let path = dir.join(name);
            fs.remove_file(&path).map_err(Error::io("remove", &path))?;
            changed = true;
        } else if let Some(base) = segment::parse_file_name(name, SWAP_SUFFIX) {
            let swap = dir.join(name);
            segment::remove_index_files(fs, dir, base)?;
            let log = file_path(dir, base, LOG_SUFFIX);
            fs.rename(&swap, &log).map_err(Error::io("rename", &swap))?;
            tracing::info!(segment = %log.display(), "completed an interrupted compaction swap");
            changed = true;
        }
    }
    if changed {
        fs.sync_dir(dir)
            .map_err(Error::io("fsync directory", dir))?;
    }
    Ok(changed)
}

/// An inactive segment chosen for a pass, captured so the pass can read it without the lock.
pub(crate) struct Planned {
    base: i64,
    file: Arc<dyn File>,
    path: PathBuf,
    size: u64,
    next_offset: i64,
}

/// A rewritten segment, fsynced as `<base>.log.cleaned`, waiting for its swap.
pub(crate) struct Cleaned {
    segment: Segment,
    cleaned_path: PathBuf,
}

fn read_batches(file: &dyn File, size: u64, path: &Path) -> Result<Vec<(BatchHeader, Bytes)>> {
    let mut headers = Vec::new();
    segment::scan(file, 0, size, false, |position, header| {
        headers.push((position, *header));
        true
    })
    .map_err(Error::io("read segment", path))?;
    let mut out = Vec::with_capacity(headers.len());
    for (position, header) in headers {
        let mut buf = BytesMut::zeroed(header.size());
        read_exact_at(file, &mut buf, position).map_err(Error::io("read segment", path))?;
        out.push((header, buf.freeze()));
    }
    Ok(out)
}

/// Phase 1, under the log's lock: the inactive segments wholly below `clean_below` whose
/// records are all older than `min.compaction.lag.ms`, and where the cleaned range will end.
pub(crate) fn plan(
    segments: &BTreeMap<i64, Segment>,
    clean_below: i64,
    now: i64,
    config: &LogConfig,
) -> Result<(Vec<Planned>, i64)> {
    let bases: Vec<i64> = segments.keys().copied().collect();
    let mut planned = Vec::new();
    let mut cleaned_up_to = bases.first().copied().unwrap_or(0);
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
        planned.push(Planned {
            base,
            file: segment.file.get()?,
            path: segment.path.clone(),
            size: segment.size,
            next_offset: segment.next_offset,
        });
        cleaned_up_to = next;
    }
    Ok((planned, cleaned_up_to))
}

/// Phase 2, without the lock: builds the offset map over the planned segments and writes each
/// one's surviving batches to `<base>.log.cleaned`, fsynced.
pub(crate) fn clean(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    planned: &[Planned],
    now: i64,
    config: &LogConfig,
    stats: &mut CompactionStats,
) -> Result<Vec<Cleaned>> {
    // The offset map: the latest offset of every key in the cleanable range.
    let mut latest: HashMap<Bytes, i64> = HashMap::new();
    for p in planned {
        for (header, bytes) in read_batches(&*p.file, p.size, &p.path)? {
            if header.attributes.is_control() {
                continue;
            }
            let Ok(batch) = RecordBatch::new(bytes) else {
                continue;
            };
            let Ok(records) = batch.records() else {
                continue;
            };
            for record in records.flatten() {
                if let Some(key) = record.key {
                    latest.insert(key, record.offset);
                }
            }
        }
    }

    let tombstone_horizon = now.saturating_sub(config.delete_retention_ms);
    let mut out = Vec::with_capacity(planned.len());
    for p in planned {
        let cleaned_path = file_path(dir, p.base, CLEANED_SUFFIX);
        let file = fs
            .open(&cleaned_path, true)
            .map_err(Error::io("create", &cleaned_path))?;
        file.set_len(0)
            .map_err(Error::io("truncate", &cleaned_path))?;
        let mut cleaned = Segment::empty(
            p.base,
            SegmentFile::pinned(fs, file_path(dir, p.base, LOG_SUFFIX), file.clone()),
        );
        let mut position = 0u64;
        for (header, bytes) in read_batches(&*p.file, p.size, &p.path)? {
            let (keep, removed) = clean_batch(&header, bytes, &latest, tombstone_horizon)?;
            stats.records_removed += removed;
            let Some(keep) = keep else { continue };
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
        }
        file.sync_data()
            .map_err(Error::io("fsync", &cleaned_path))?;
        // Offsets are never renumbered: the segment still ends where it ended.
        cleaned.next_offset = p.next_offset;
        cleaned.size = position;
        stats.segments += 1;
        stats.bytes_before += p.size;
        stats.bytes_after += position;
        out.push(Cleaned {
            segment: cleaned,
            cleaned_path,
        });
    }
    Ok(out)
}

/// Phase 3, under the lock again: replaces each original with its cleaned version through the
/// crash-safe swap, or discards the cleaned files when `still_valid` is false (the log was
/// truncated or lost segments meanwhile).
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
    } in cleaned
    {
        let base = cleaned.base_offset;
        if !still_valid || !segments.contains_key(&base) {
            fs.remove_file(&cleaned_path)
                .map_err(Error::io("remove", &cleaned_path))?;
            continue;
        }
        let swap_path = file_path(dir, base, SWAP_SUFFIX);
        fs.rename(&cleaned_path, &swap_path)
            .map_err(Error::io("rename", &cleaned_path))?;
        fs.sync_dir(dir)
            .map_err(Error::io("fsync directory", dir))?;
        segment::remove_index_files(&**fs, dir, base)?;
        fs.sync_dir(dir)
            .map_err(Error::io("fsync directory", dir))?;
        fs.rename(&swap_path, &cleaned.path)
            .map_err(Error::io("rename", &swap_path))?;
        cleaned.write_index_files_atomically(&**fs, dir)?;
        fs.sync_dir(dir)
            .map_err(Error::io("fsync directory", dir))?;
        cleaned.file.unpin(handles, false);
        segments.insert(base, cleaned);
    }
    Ok(())
}

/// The bytes to keep for one batch (`None` when no record survives) and how many records go.
fn clean_batch(
    header: &BatchHeader,
    bytes: Bytes,
    latest: &HashMap<Bytes, i64>,
    tombstone_horizon: i64,
) -> Result<(Option<Bytes>, u64)> {
    if header.attributes.is_control() {
        return Ok((Some(bytes), 0));
    }
    let batch = RecordBatch::new(bytes.clone()).map_err(|source| Error::InvalidBatch {
        position: 0,
        source,
    })?;
    // Compressed batches stay whole until weir-records can decompress them.
    let Ok(records) = batch.records() else {
        return Ok((Some(bytes), 0));
    };
    let records: Vec<_> = records
        .collect::<std::result::Result<_, _>>()
        .map_err(|source| Error::InvalidBatch {
            position: 0,
            source,
        })?;
    let total = records.len();
    let retained: Vec<_> = records
        .into_iter()
        .filter(|r| match &r.key {
            None => true,
            Some(key) => {
                latest.get(key) == Some(&r.offset)
                    && !(r.value.is_none() && r.timestamp <= tombstone_horizon)
            }
        })
        .collect();
    let removed = (total - retained.len()) as u64;
    if removed == 0 {
        return Ok((Some(bytes), 0));
    }
    if retained.is_empty() {
        return Ok((None, removed));
    }
    let mut builder = RecordBatchBuilder::new();
    builder
        .base_offset(header.base_offset)
        .partition_leader_epoch(header.partition_leader_epoch)
        .producer(
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
        )
        .transactional(header.attributes.is_transactional())
        .timestamp_type(header.attributes.timestamp_type())
        .preserve_offsets(header.last_offset_delta);
    for record in retained {
        builder.push(record);
    }
    let rebuilt = builder.build().map_err(|source| Error::InvalidBatch {
        position: 0,
        source,
    })?;
    if header.attributes.timestamp_type() == TimestampType::LogAppendTime {
        let mut bytes = rebuilt.to_vec();
        batch::set_log_append_time(&mut bytes, header.max_timestamp).map_err(|source| {
            Error::InvalidBatch {
                position: 0,
                source,
            }
        })?;
        return Ok((Some(Bytes::from(bytes)), removed));
    }
    Ok((Some(rebuilt), removed))
}
