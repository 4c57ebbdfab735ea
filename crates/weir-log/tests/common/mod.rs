//! Helpers shared by the integration tests.
#![allow(
    dead_code,
    reason = "each test crate uses a different subset of the helpers"
)]
#![expect(clippy::unwrap_used, reason = "test helpers fail the test on error")]

use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weir_log::fault::FaultFs;
use weir_log::{AppendOrigin, Log, LogConfig, LogOptions, ManualClock};
use weir_records::{Record, RecordBatch, RecordBatchBuilder, RecordBatches};

pub(crate) const NOW: i64 = 1_700_000_000_000;
pub(crate) const LEADER: AppendOrigin = AppendOrigin::Leader { leader_epoch: 0 };

pub(crate) fn dir() -> PathBuf {
    PathBuf::from("/data/events-0")
}

pub(crate) fn open(fs: &FaultFs, config: &LogConfig, clock: &Arc<ManualClock>) -> Log {
    open_with_dedupe(fs, config, clock, weir_log::DEFAULT_DEDUPE_BUFFER_SIZE)
}

/// [`open`] with a compaction key map of `dedupe_buffer_size` bytes.
pub(crate) fn open_with_dedupe(
    fs: &FaultFs,
    config: &LogConfig,
    clock: &Arc<ManualClock>,
    dedupe_buffer_size: usize,
) -> Log {
    Log::open_with(
        dir(),
        LogOptions {
            config: config.clone(),
            fs: Arc::new(fs.clone()),
            clock: clock.clone(),
            // Tiny, so tests exercise closing and reopening inactive segments.
            handles: weir_log::HandleCache::new(2),
            cleaner_dedupe_buffer_size: dedupe_buffer_size,
        },
    )
    .unwrap()
}

/// A batch of `n` records whose values name `tag` and the record index.
pub(crate) fn batch(tag: u64, n: usize, ts: i64) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new();
    for i in 0..n {
        let value = format!("{tag}-{i}-{}", "x".repeat((tag % 50) as usize));
        builder.push(Record::new(
            ts,
            Some(format!("k{}", tag % 7).as_bytes()),
            Some(value.as_bytes()),
        ));
    }
    builder.build().unwrap().to_vec()
}

/// Every batch of the log from its start, checked.
pub(crate) fn all_batches(log: &Log) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let leo = log.log_end_offset();
    while offset < leo {
        let slice = log.read(offset, 1 << 20, leo).unwrap();
        if slice.is_empty() {
            break;
        }
        for b in RecordBatches::new(slice.to_bytes().unwrap()) {
            let b = b.unwrap();
            b.verify_crc().unwrap();
            assert!(b.base_offset() >= offset || out.is_empty());
            offset = b.next_offset();
            out.push(b);
        }
    }
    out
}

pub(crate) fn segment_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

pub(crate) fn bytes_of(batches: &[RecordBatch]) -> Vec<Bytes> {
    batches.iter().map(|b| b.as_bytes().clone()).collect()
}
