//! [`Segment`]: one `.log` file of whole batches plus its in-memory offset and time indexes.
//!
//! A segment is named by its base offset (20 digits); its `.index` and `.timeindex` files are
//! written when it stops being the active segment and at clean shutdown, and are fsynced by
//! the flush that moves the recovery point past it.

use crate::fs::{File, FileSystem, read_exact_at, read_up_to};
use crate::handles::SegmentFile;
use crate::index::{OFFSET_ENTRY, OffsetIndex, TIME_ENTRY, TimeIndex};
use crate::txn_index::{self, TxnIndex};
use crate::{EpochEntry, Error, Result};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weir_records::batch::{BATCH_HEADER_LEN, BatchHeader, CRC_START};

/// File name suffixes.
pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// `<dir>/<20-digit base offset><suffix>`.
pub(crate) fn file_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}"))
}

/// Parses `<20 digits><suffix>` into a base offset.
pub(crate) fn parse_file_name(name: &str, suffix: &str) -> Option<i64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Size of the reads recovery uses to scan a segment.
const SCAN_CHUNK: usize = 1 << 20;

/// One segment of a partition log.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    pub(crate) file: SegmentFile,
    pub(crate) path: PathBuf,
    /// Bytes of whole batches in the file.
    pub(crate) size: u64,
    /// Offset after the last batch (the base offset when empty).
    pub(crate) next_offset: i64,
    pub(crate) index: OffsetIndex,
    pub(crate) time_index: TimeIndex,
    /// Transactions aborted by markers in this segment (its `.txnindex`, kept in memory: a
    /// read_committed fetch consults it on every read).
    pub(crate) txn_index: TxnIndex,
    bytes_since_index_entry: u64,
    /// Largest timestamp in the segment, -1 when none.
    pub(crate) max_timestamp: i64,
    pub(crate) offset_of_max_timestamp: i64,
    /// Max timestamp of the first batch: `segment.ms` is measured from it.
    pub(crate) first_batch_timestamp: Option<i64>,
    /// Index files written but not yet fsynced.
    /// Paths only: holding them open would cost two descriptors per rolled segment until the
    /// next flush, beyond the handle cache's bound.
    pub(crate) unsynced_index_files: Vec<PathBuf>,
}

/// What recovery found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Bytes truncated off the end because they were torn or corrupt.
    pub(crate) truncated_bytes: u64,
    /// Where each run of batches of one partition leader epoch starts, among the batches kept.
    pub(crate) epoch_starts: Vec<EpochEntry>,
}

impl Segment {
    pub(crate) fn empty(base_offset: i64, file: SegmentFile) -> Self {
        Self {
            base_offset,
            path: file.path().to_path_buf(),
            file,
            size: 0,
            next_offset: base_offset,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            txn_index: TxnIndex::default(),
            bytes_since_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            first_batch_timestamp: None,
            unsynced_index_files: Vec::new(),
        }
    }

    /// Creates an empty segment, replacing any stale files of the same name.
    pub(crate) fn create(fs: &Arc<dyn FileSystem>, dir: &Path, base_offset: i64) -> Result<Self> {
        let path = file_path(dir, base_offset, LOG_SUFFIX);
        remove_index_files(&**fs, dir, base_offset)?;
        txn_index::remove(&**fs, dir, base_offset)?;
        let file = fs
            .open(&path, true)
            .map_err(Error::io("create segment", &path))?;
        file.set_len(0)
            .map_err(Error::io("truncate segment", &path))?;
        Ok(Self::empty(
            base_offset,
            SegmentFile::pinned(fs, path, file),
        ))
    }

    /// Opens a segment whose index files can be trusted if they pass their checks; returns
    /// `Ok(None)` when they are missing or fail, so the caller recovers the segment instead.
    pub(crate) fn open_with_indexes(
        fs: &Arc<dyn FileSystem>,
        dir: &Path,
        base_offset: i64,
    ) -> Result<Option<Self>> {
        let path = file_path(dir, base_offset, LOG_SUFFIX);
        let file = fs
            .open(&path, false)
            .map_err(Error::io("open segment", &path))?;
        let size = file.len().map_err(Error::io("stat segment", &path))?;
        let mut segment = Self::empty(base_offset, SegmentFile::pinned(fs, path, file.clone()));
        segment.size = size;
        if size == 0 {
            segment.txn_index = txn_index::load(&**fs, dir, base_offset, base_offset)?;
            return Ok(Some(segment));
        }
        let index_path = file_path(dir, base_offset, INDEX_SUFFIX);
        let time_path = file_path(dir, base_offset, TIME_INDEX_SUFFIX);
        if !fs.exists(&index_path) || !fs.exists(&time_path) {
            return Ok(None);
        }
        let index_bytes = read_file(&**fs, &index_path)?;
        let time_bytes = read_file(&**fs, &time_path)?;
        let (Ok(index), Ok(time_index)) = (
            OffsetIndex::decode(&index_bytes, size),
            TimeIndex::decode(&time_bytes),
        ) else {
            tracing::warn!(segment = %segment.path.display(), "index failed its checks; rebuilding");
            return Ok(None);
        };
        if time_index.last().is_none() {
            // A non-empty segment always gets a final time index entry when it is closed.
            return Ok(None);
        }
        segment.index = index;
        segment.time_index = time_index;
        if let Some((ts, rel)) = segment.time_index.last() {
            segment.max_timestamp = ts;
            segment.offset_of_max_timestamp = base_offset + i64::from(rel);
        }
        // The next offset: scan the few batches after the last index entry.
        let start = u64::from(segment.index.lookup(u32::MAX));
        let mut next = base_offset;
        let end = scan(&*file, start, size, false, |_, header| {
            next = header.last_offset() + 1;
            true
        })
        .map_err(Error::io("read segment", &segment.path))?;
        if end != size || next <= base_offset {
            return Ok(None);
        }
        segment.next_offset = next;
        // What appends to a reopened active segment need: `segment.ms` counts from the first
        // batch, and the next index entry comes `index.interval.bytes` after the last one.
        segment.first_batch_timestamp = read_header(&*file, 0, size)
            .map_err(Error::io("read segment", &segment.path))?
            .map(|h| h.max_timestamp);
        segment.bytes_since_index_entry = size - start;
        segment.txn_index = txn_index::load(&**fs, dir, base_offset, next)?;
        Ok(Some(segment))
    }

    /// Opens a segment and rebuilds its indexes from the batches, verifying every CRC and
    /// truncating the file at the first torn or corrupt batch.
    pub(crate) fn recover(
        fs: &Arc<dyn FileSystem>,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u32,
    ) -> Result<(Self, Recovered)> {
        let path = file_path(dir, base_offset, LOG_SUFFIX);
        let file = fs
            .open(&path, false)
            .map_err(Error::io("open segment", &path))?;
        let len = file.len().map_err(Error::io("stat segment", &path))?;
        let mut segment = Self::empty(base_offset, SegmentFile::pinned(fs, path, file.clone()));
        let mut next = base_offset;
        let mut batches = Vec::new();
        let mut epoch_starts = Vec::new();
        let end = scan(&*file, 0, len, true, |position, header| {
            let relative = header.last_offset() - base_offset;
            if header.base_offset < next || !(0..=i64::from(i32::MAX)).contains(&relative) {
                return false;
            }
            next = header.last_offset() + 1;
            batches.push((position, *header));
            push_epoch_start(&mut epoch_starts, header);
            true
        })
        .map_err(Error::io("read segment", &segment.path))?;
        for (position, header) in batches {
            segment.track_batch(
                position,
                header.size() as u64,
                header.last_offset(),
                header.max_timestamp,
                header.last_offset(),
                index_interval_bytes,
            );
        }
        if end < len {
            tracing::warn!(
                segment = %segment.path.display(),
                valid = end,
                len,
                "truncating torn or corrupt tail"
            );
            file.set_len(end)
                .map_err(Error::io("truncate segment", &segment.path))?;
        }
        segment.size = end;
        segment.next_offset = next;
        remove_index_files(&**fs, dir, base_offset)?;
        // The transaction index cannot be rebuilt from this segment alone (see `txn_index`):
        // keep its valid entries for the batches that survived.
        segment.txn_index = txn_index::load(&**fs, dir, base_offset, next)?;
        Ok((
            segment,
            Recovered {
                truncated_bytes: len - end,
                epoch_starts,
            },
        ))
    }

    /// Where each run of batches of one partition leader epoch starts (reading only batch
    /// headers), to rebuild the leader epoch cache.
    pub(crate) fn epoch_starts(&self) -> Result<Vec<EpochEntry>> {
        let file = self.file.get()?;
        let mut starts = Vec::new();
        scan(&*file, 0, self.size, false, |_, header| {
            push_epoch_start(&mut starts, header);
            true
        })
        .map_err(Error::io("read segment", &self.path))?;
        Ok(starts)
    }

    /// Records a batch written at `position`, adding index entries every `interval` bytes.
    pub(crate) fn track_batch(
        &mut self,
        position: u64,
        size: u64,
        last_offset: i64,
        max_timestamp: i64,
        offset_of_max_timestamp: i64,
        interval: u32,
    ) {
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(max_timestamp);
        }
        if max_timestamp > self.max_timestamp {
            self.max_timestamp = max_timestamp;
            self.offset_of_max_timestamp = offset_of_max_timestamp;
        }
        if self.bytes_since_index_entry > u64::from(interval) {
            self.index
                .append(self.relative(last_offset), position as u32);
            self.time_index.maybe_append(
                self.max_timestamp,
                self.relative(self.offset_of_max_timestamp),
            );
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += size;
        self.size = self.size.max(position + size);
        self.next_offset = last_offset + 1;
    }

    pub(crate) fn relative(&self, offset: i64) -> u32 {
        u32::try_from(offset - self.base_offset).unwrap_or(u32::MAX)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Whether the offset or time index cannot take another entry.
    pub(crate) fn index_full(&self, segment_index_bytes: u32) -> bool {
        let bytes = segment_index_bytes as usize;
        self.index.len() >= bytes / OFFSET_ENTRY || self.time_index.len() >= bytes / TIME_ENTRY
    }

    /// Writes both index files (with a final time index entry for the segment's largest
    /// timestamp). They become durable at the next flush covering this segment.
    pub(crate) fn write_index_files(&mut self, fs: &dyn FileSystem, dir: &Path) -> Result<()> {
        if self.max_timestamp >= 0 || !self.is_empty() {
            let rel = self.relative(self.offset_of_max_timestamp);
            self.time_index
                .maybe_append(self.max_timestamp.max(-1), rel);
        }
        let index = file_path(dir, self.base_offset, INDEX_SUFFIX);
        write_file(fs, &index, &self.index.encode())?;
        let time = file_path(dir, self.base_offset, TIME_INDEX_SUFFIX);
        write_file(fs, &time, &self.time_index.encode())?;
        // Keep a transaction index path waiting for its fsync.
        for path in [index, time] {
            if !self.unsynced_index_files.contains(&path) {
                self.unsynced_index_files.push(path);
            }
        }
        Ok(())
    }

    /// Writes both index files with [`crate::fs::write_atomically`], so a crash leaves each
    /// either complete or as it was.
    pub(crate) fn write_index_files_atomically(
        &mut self,
        fs: &dyn FileSystem,
        dir: &Path,
    ) -> Result<()> {
        if self.max_timestamp >= 0 || !self.is_empty() {
            let rel = self.relative(self.offset_of_max_timestamp);
            self.time_index
                .maybe_append(self.max_timestamp.max(-1), rel);
        }
        for (suffix, bytes) in [
            (INDEX_SUFFIX, self.index.encode()),
            (TIME_INDEX_SUFFIX, self.time_index.encode()),
        ] {
            crate::fs::write_atomically(fs, &file_path(dir, self.base_offset, suffix), &bytes)?;
        }
        self.unsynced_index_files.clear();
        Ok(())
    }

    /// Adds an aborted transaction whose marker is in this segment to its index (no-op when
    /// the marker has an entry already); an appended entry is fsynced by the next flush.
    pub(crate) fn add_aborted_txn(
        &mut self,
        fs: &dyn FileSystem,
        dir: &Path,
        entry: txn_index::AbortedTxn,
    ) -> Result<bool> {
        let (added, unsynced) =
            txn_index::insert(fs, dir, self.base_offset, &mut self.txn_index, entry)?;
        if let Some(path) = unsynced {
            if !self.unsynced_index_files.contains(&path) {
                self.unsynced_index_files.push(path);
            }
        }
        Ok(added)
    }

    /// Drops the transaction index entries whose marker is no longer in the segment (after
    /// [`Segment::truncate_to`]), durably: a crash must not bring back an entry that would
    /// then cover batches appended later at the same offsets.
    pub(crate) fn truncate_txn_index(&mut self, fs: &dyn FileSystem, dir: &Path) -> Result<()> {
        if self.txn_index.truncate_from(self.next_offset) {
            txn_index::cut(fs, dir, self.base_offset, &self.txn_index)?;
        }
        Ok(())
    }

    /// Removes batches from the first one containing an offset `>= offset` onwards; the
    /// segment then ends after its last remaining batch (or at its base when none remains).
    pub(crate) fn truncate_to(&mut self, offset: i64, interval: u32) -> Result<()> {
        let file = self.file.get()?;
        let start = u64::from(self.index.lookup(self.relative(offset)));
        let mut cut = None;
        scan(&*file, start, self.size, false, |position, header| {
            if header.last_offset() >= offset {
                cut = Some((position, header.base_offset));
                return false;
            }
            true
        })
        .map_err(Error::io("read segment", &self.path))?;
        // With no batch to cut, the state is still rebuilt: a compacted segment may end past
        // its last batch, and as the active segment its end must be what reopening would find.
        let position = cut.map_or(self.size, |(position, _)| position);
        if position < self.size {
            file.set_len(position)
                .map_err(Error::io("truncate segment", &self.path))?;
            // Make the truncation durable now: otherwise a crash could bring back the removed
            // batches, which a follower truncating to its leader must never see again.
            file.sync_data()
                .map_err(Error::io("fsync segment", &self.path))?;
        }
        // Rebuild the in-memory state of what is left: cheap compared to the I/O that produced it.
        let mut batches = Vec::new();
        scan(&*file, 0, position, false, |p, h| {
            batches.push((p, *h));
            true
        })
        .map_err(Error::io("read segment", &self.path))?;
        let base = self.base_offset;
        self.size = 0;
        self.next_offset = base;
        self.index = OffsetIndex::default();
        self.time_index = TimeIndex::default();
        self.bytes_since_index_entry = 0;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = base;
        self.first_batch_timestamp = None;
        for (p, h) in batches {
            self.track_batch(
                p,
                h.size() as u64,
                h.last_offset(),
                h.max_timestamp,
                h.last_offset(),
                interval,
            );
        }
        self.size = position;
        Ok(())
    }

    /// Position of the first batch whose last offset is `>= offset`, with its header, searching
    /// from the index; `None` when no batch in `[.., end)` qualifies.
    pub(crate) fn find_batch(&self, offset: i64, end: u64) -> Result<Option<(u64, BatchHeader)>> {
        let file = self.file.get()?;
        let start = if offset <= self.base_offset {
            0
        } else {
            u64::from(self.index.lookup(self.relative(offset)))
        };
        let mut found = None;
        scan(&*file, start, end, false, |position, header| {
            if header.last_offset() >= offset {
                found = Some((position, *header));
                return false;
            }
            true
        })
        .map_err(Error::io("read segment", &self.path))?;
        Ok(found)
    }
}

/// Adds `header`'s batch to `starts` when it begins a run of a new partition leader epoch.
fn push_epoch_start(starts: &mut Vec<EpochEntry>, header: &BatchHeader) {
    if starts
        .last()
        .is_none_or(|last| last.epoch != header.partition_leader_epoch)
    {
        starts.push(EpochEntry {
            epoch: header.partition_leader_epoch,
            start_offset: header.base_offset,
        });
    }
}

/// Reads a batch header at `position`, or `None` when fewer than a header's bytes remain.
pub(crate) fn read_header(
    file: &dyn File,
    position: u64,
    end: u64,
) -> io::Result<Option<BatchHeader>> {
    if end.saturating_sub(position) < BATCH_HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut buf = [0u8; BATCH_HEADER_LEN];
    read_exact_at(file, &mut buf, position)?;
    Ok(BatchHeader::parse(&buf).ok())
}

/// Walks batches from `start` to `end`, calling `visit(position, header)` for each whole batch
/// (with a valid CRC when `verify` is set) until it returns false. Returns the end position of
/// the last batch visited with `true`, i.e. where valid data ends.
pub(crate) fn scan(
    file: &dyn File,
    start: u64,
    end: u64,
    verify: bool,
    mut visit: impl FnMut(u64, &BatchHeader) -> bool,
) -> io::Result<u64> {
    let mut position = start;
    if !verify {
        while let Some(header) = read_header(file, position, end)? {
            let size = header.size() as u64;
            if position + size > end || !visit(position, &header) {
                break;
            }
            position += size;
        }
        return Ok(position);
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = start;
    let mut reported = start;
    loop {
        // Make sure `buf` holds `need` bytes from `position`, refilling from the file.
        let fill = |need: usize, buf: &mut Vec<u8>, buf_start: &mut u64| -> io::Result<bool> {
            let have_from = position.saturating_sub(*buf_start) as usize;
            if *buf_start <= position && buf.len() >= have_from + need {
                return Ok(true);
            }
            let want = need.max(SCAN_CHUNK).min((end - position) as usize);
            if want < need {
                return Ok(false);
            }
            buf.resize(want, 0);
            let n = read_up_to(file, buf, position)?;
            buf.truncate(n);
            *buf_start = position;
            Ok(n >= need)
        };
        if end.saturating_sub(position) < BATCH_HEADER_LEN as u64
            || !fill(BATCH_HEADER_LEN, &mut buf, &mut buf_start)?
        {
            break;
        }
        let at = (position - buf_start) as usize;
        let Ok(header) = BatchHeader::parse(buf.get(at..).unwrap_or_default()) else {
            break;
        };
        let size = header.size();
        if position + size as u64 > end || !fill(size, &mut buf, &mut buf_start)? {
            break;
        }
        let at = (position - buf_start) as usize;
        let batch = buf.get(at..at + size).unwrap_or_default();
        if weir_records::crc32c(batch.get(CRC_START..).unwrap_or_default()) != header.crc {
            break;
        }
        if !visit(position, &header) {
            break;
        }
        position += size as u64;
        if position - reported >= 256 << 20 {
            tracing::info!(position, end, "recovery progress");
            reported = position;
        }
    }
    Ok(position)
}

fn read_file(fs: &dyn FileSystem, path: &Path) -> Result<Vec<u8>> {
    let file = fs.open(path, false).map_err(Error::io("open", path))?;
    let len = file.len().map_err(Error::io("stat", path))?;
    let mut buf = vec![0; len as usize];
    read_exact_at(&*file, &mut buf, 0).map_err(Error::io("read", path))?;
    Ok(buf)
}

pub(crate) fn write_file(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> Result<Arc<dyn File>> {
    let file = fs.open(path, true).map_err(Error::io("create", path))?;
    file.set_len(0).map_err(Error::io("truncate", path))?;
    file.write_all_at(bytes, 0)
        .map_err(Error::io("write", path))?;
    Ok(file)
}

pub(crate) fn remove_index_files(fs: &dyn FileSystem, dir: &Path, base_offset: i64) -> Result<()> {
    for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let path = file_path(dir, base_offset, suffix);
        if fs.exists(&path) {
            fs.remove_file(&path).map_err(Error::io("remove", &path))?;
        }
    }
    Ok(())
}
