//! Arbitrary bytes as a partition directory's files (segment, offset index, time index, and
//! optionally a recovery checkpoint and clean-shutdown marker), then open the log on an
//! in-memory file system. Opening must never panic or fail on corrupt content: recovery
//! truncates at the first bad batch and rebuilds indexes it cannot trust. Without a
//! clean-shutdown marker, everything the recovered log serves must be CRC-valid batches below
//! its end offset, and the log must accept an append at that end offset that survives a reopen.
//!
//! Input layout: `flags u8, index_len u16, timeindex_len u16, checkpoint_len u8`, then the
//! index, time index and checkpoint bytes, then the segment bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weir_log::fault::FaultFs;
use weir_log::{AppendOrigin, FileSystem, Log, LogConfig, LogOptions, ManualClock};
use weir_records::{Record, RecordBatchBuilder, RecordBatches};

const NOW: i64 = 1_700_000_000_000;
const LEADER: AppendOrigin = AppendOrigin::Leader { leader_epoch: 0 };

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    let (head, tail) = data.split_at(n);
    *data = tail;
    head
}

fn write(fs: &FaultFs, path: &Path, bytes: &[u8]) {
    let file = fs.open(path, true).unwrap();
    file.write_all_at(bytes, 0).unwrap();
    file.sync_data().unwrap();
}

fn open(fs: &FaultFs, dir: &Path) -> Log {
    let options = LogOptions {
        config: LogConfig::default(),
        fs: Arc::new(fs.clone()),
        clock: Arc::new(ManualClock::new(NOW)),
        handles: weir_log::HandleCache::new(4),
    };
    match Log::open_with(dir, options) {
        Ok(log) => log,
        Err(e) => panic!("opening a corrupt log must recover, not fail: {e}"),
    }
}

/// Reads every batch from the log start to its end; checks CRCs and offset order when
/// `trusted` (no clean-shutdown marker, so recovery scanned the segment).
fn read_all(log: &Log, trusted: bool) {
    let leo = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut last = -1;
    for _ in 0..10_000 {
        if offset >= leo {
            break;
        }
        let Ok(slice) = log.read(offset, 1 << 16, leo) else {
            assert!(!trusted, "read at {offset} of a recovered log failed");
            return;
        };
        if slice.is_empty() {
            break;
        }
        let Ok(bytes) = slice.to_bytes() else { return };
        for batch in RecordBatches::new(bytes) {
            let Ok(batch) = batch else {
                assert!(!trusted, "recovered log served a malformed batch");
                return;
            };
            if trusted {
                assert!(batch.verify_crc().is_ok(), "recovered log served a bad CRC");
                assert!(batch.base_offset() > last, "offsets go backwards");
                assert!(batch.last_offset() < leo, "batch past the log end offset");
            }
            last = last.max(batch.last_offset());
            offset = offset.max(batch.last_offset().saturating_add(1));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let header = take(&mut data, 6);
    let [flags, i0, i1, t0, t1, c0] = header else { return };
    let index = take(&mut data, usize::from(u16::from_be_bytes([*i0, *i1])));
    let time_index = take(&mut data, usize::from(u16::from_be_bytes([*t0, *t1])));
    let checkpoint = take(&mut data, usize::from(*c0));
    let segment = data;

    let fs = FaultFs::new();
    let dir = PathBuf::from("/data/events-0");
    fs.create_dir_all(&dir).unwrap();
    let base = dir.join(format!("{:020}", 0));
    write(&fs, &base.with_extension("log"), segment);
    if flags & 1 != 0 {
        write(&fs, &base.with_extension("index"), index);
    }
    if flags & 2 != 0 {
        write(&fs, &base.with_extension("timeindex"), time_index);
    }
    if flags & 4 != 0 {
        write(&fs, &dir.join("log-offsets.checkpoint"), checkpoint);
    }
    let clean = flags & 8 != 0;
    if clean {
        write(&fs, &dir.join(".clean-shutdown"), b"");
    }
    fs.sync_dir(&dir).unwrap();

    let log = open(&fs, &dir);
    read_all(&log, !clean);
    if clean {
        // A clean-shutdown marker means the files are trusted as they are; only the absence of
        // panics is checked on this path.
        let _ = log.append(&mut batch(), LEADER);
        return;
    }
    let leo = log.log_end_offset();
    let info = match log.append(&mut batch(), LEADER) {
        Ok(info) => info,
        Err(e) => panic!("append after recovery failed: {e}"),
    };
    assert_eq!(info.first_offset, leo);
    log.flush().unwrap();
    drop(log);
    let log = open(&fs, &dir);
    assert_eq!(log.log_end_offset(), leo + 2);
    read_all(&log, true);
});

fn batch() -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new();
    builder.push(Record::new(NOW, Some(b"k"), Some(b"v0")));
    builder.push(Record::new(NOW, Some(b"k"), Some(b"v1")));
    builder.build().unwrap().to_vec()
}
