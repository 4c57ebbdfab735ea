//! Compaction for `cleanup.policy=compact`: keep the latest record per key, drop tombstones
//! older than `delete.retention.ms`, never renumber offsets.
//!
//! A pass is driven by the caller ([`crate::Log::compact`]) and is deterministic: it reads the
//! clock once and touches only inactive segments wholly below the given offset whose records
//! are all older than `min.compaction.lag.ms`.
//!
//! Each cleaned segment replaces its original through a swap that survives a crash at any
//! point: the new bytes go to `<base>.log.cleaned` (fsynced), which is renamed to
//! `<base>.log.swap`; then the old index files are removed, the swap file is renamed over
//! `<base>.log`, and new index files are put in place atomically. On open, a `.cleaned` file is
//! discarded and a `.swap` file completes its swap.

use crate::config::LogConfig;
use crate::fs::{FileSystem, read_exact_at};
use crate::handles::{HandleCache, SegmentFile};
use crate::segment::{self, LOG_SUFFIX, Segment, file_path};
use crate::{Error, Result};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
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

fn read_batches(segment: &Segment) -> Result<Vec<(BatchHeader, Bytes)>> {
    let file = segment.file.get()?;
    let mut headers = Vec::new();
    segment::scan(&*file, 0, segment.size, false, |position, header| {
        headers.push((position, *header));
        true
    })
    .map_err(Error::io("read segment", &segment.path))?;
    let mut out = Vec::with_capacity(headers.len());
    for (position, header) in headers {
        let mut buf = BytesMut::zeroed(header.size());
        read_exact_at(&*file, &mut buf, position)
            .map_err(Error::io("read segment", &segment.path))?;
        out.push((header, buf.freeze()));
    }
    Ok(out)
}

/// Compacts the eligible segments of `segments` (all but the last, wholly below `clean_below`).
pub(crate) fn compact(
    fs: &Arc<dyn FileSystem>,
    handles: &HandleCache,
    dir: &Path,
    segments: &mut BTreeMap<i64, Segment>,
    clean_below: i64,
    now: i64,
    config: &LogConfig,
) -> Result<CompactionStats> {
    let bases: Vec<i64> = segments.keys().copied().collect();
    let mut cleanable = Vec::new();
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
        cleanable.push(base);
    }
    let mut stats = CompactionStats {
        cleaned_up_to: cleanable
            .last()
            .and_then(|last| segments.range(last + 1..).next().map(|(&b, _)| b))
            .unwrap_or_else(|| bases.first().copied().unwrap_or(0)),
        ..CompactionStats::default()
    };
    if cleanable.is_empty() {
        return Ok(stats);
    }

    // The offset map: the latest offset of every key in the cleanable range.
    let mut latest: HashMap<Bytes, i64> = HashMap::new();
    for base in &cleanable {
        let Some(segment) = segments.get(base) else {
            continue;
        };
        for (header, bytes) in read_batches(segment)? {
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
    for base in cleanable {
        let Some(old) = segments.get(&base) else {
            continue;
        };
        let cleaned_path = file_path(dir, base, CLEANED_SUFFIX);
        let file = fs
            .open(&cleaned_path, true)
            .map_err(Error::io("create", &cleaned_path))?;
        file.set_len(0)
            .map_err(Error::io("truncate", &cleaned_path))?;
        let mut cleaned = Segment::empty(
            base,
            SegmentFile::pinned(fs, file_path(dir, base, LOG_SUFFIX), file.clone()),
        );
        let mut position = 0u64;
        for (header, bytes) in read_batches(old)? {
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
        cleaned.next_offset = old.next_offset;
        cleaned.size = position;
        stats.segments += 1;
        stats.bytes_before += old.size;
        stats.bytes_after += position;

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
    Ok(stats)
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
