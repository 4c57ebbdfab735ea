use super::*;
use crate::config::ManualClock;
use crate::fault::FaultFs;
use weir_records::{Record, RecordBatchBuilder};

const NOW: i64 = 1_700_000_000_000;
const LEADER: AppendOrigin = AppendOrigin::Leader { leader_epoch: 3 };

struct Harness {
    fs: FaultFs,
    clock: Arc<ManualClock>,
    dir: PathBuf,
    config: LogConfig,
}

impl Harness {
    fn new(config: LogConfig) -> Self {
        Self {
            fs: FaultFs::new(),
            clock: Arc::new(ManualClock::new(NOW)),
            dir: PathBuf::from("/data/topic-0"),
            config,
        }
    }
    fn open(&self) -> Log {
        self.open_on(&self.fs)
    }
    fn open_on(&self, fs: &FaultFs) -> Log {
        Log::open_with(
            &self.dir,
            LogOptions {
                config: self.config.clone(),
                fs: Arc::new(fs.clone()),
                clock: self.clock.clone(),
                // Tiny, so tests exercise closing and reopening inactive segments.
                handles: crate::HandleCache::new(2),
                cleaner_dedupe_buffer_size: crate::DEFAULT_DEDUPE_BUFFER_SIZE,
            },
        )
        .unwrap()
    }
}

fn batch(n: usize, ts: i64, value_len: usize) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new();
    let value = vec![7u8; value_len];
    for i in 0..n {
        builder.push(Record::new(
            ts + i as i64,
            Some(format!("k{i}").as_bytes()),
            Some(&value),
        ));
    }
    builder.build().unwrap().to_vec()
}

fn offsets_in(bytes: &Bytes) -> Vec<(i64, i64)> {
    weir_records::RecordBatches::new(bytes.clone())
        .map(|b| {
            let b = b.unwrap();
            b.verify_crc().unwrap();
            (b.base_offset(), b.last_offset())
        })
        .collect()
}

#[test]
fn append_assigns_offsets_and_read_returns_whole_batches() {
    let h = Harness::new(LogConfig::default());
    let log = h.open();
    let a = log.append(&mut batch(3, NOW, 10), LEADER).unwrap();
    let b = log.append(&mut batch(2, NOW, 10), LEADER).unwrap();
    assert_eq!(
        (a.first_offset, a.last_offset, b.first_offset, b.last_offset),
        (0, 2, 3, 4)
    );
    assert_eq!(log.log_end_offset(), 5);
    let all = log.read(0, 1 << 20, 5).unwrap().to_bytes().unwrap();
    assert_eq!(offsets_in(&all), vec![(0, 2), (3, 4)]);
    // From the middle of a batch: the whole containing batch comes back.
    let mid = log.read(4, 1 << 20, 5).unwrap().to_bytes().unwrap();
    assert_eq!(offsets_in(&mid), vec![(3, 4)]);
    // The upper bound hides batches not wholly below it.
    assert_eq!(
        offsets_in(&log.read(0, 1 << 20, 4).unwrap().to_bytes().unwrap()),
        vec![(0, 2)]
    );
    assert!(log.read(0, 1 << 20, 2).unwrap().is_empty());
    // KIP-74: one whole batch even when larger than max_bytes.
    assert_eq!(
        offsets_in(&log.read(0, 1, 5).unwrap().to_bytes().unwrap()),
        vec![(0, 2)]
    );
    assert!(log.read(5, 100, 5).unwrap().is_empty());
    assert!(matches!(
        log.read(6, 100, 6),
        Err(Error::OffsetOutOfRange { .. })
    ));
    let stored = RecordBatch::new(log.read(0, 1, 5).unwrap().to_bytes().unwrap()).unwrap();
    assert_eq!(stored.header().partition_leader_epoch, 3);
}

#[test]
fn invalid_append_writes_nothing() {
    let h = Harness::new(LogConfig {
        max_message_bytes: 200,
        ..LogConfig::default()
    });
    let log = h.open();
    let mut good = batch(1, NOW, 10);
    let mut corrupt = good.clone();
    *corrupt.last_mut().unwrap() ^= 0xff;
    let mut both = good.clone();
    both.extend_from_slice(&corrupt);
    assert!(matches!(
        log.append(&mut both, LEADER),
        Err(Error::InvalidBatch { .. })
    ));
    assert!(matches!(
        log.append(&mut batch(1, NOW, 500), LEADER),
        Err(Error::MessageTooLarge { .. })
    ));
    assert!(matches!(
        log.append(&mut batch(1, NOW + 7_200_000, 1), LEADER),
        Err(Error::InvalidTimestamp { .. })
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    log.append(&mut good, LEADER).unwrap();
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn log_append_time_is_stamped() {
    let h = Harness::new(LogConfig {
        message_timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    });
    let log = h.open();
    let info = log.append(&mut batch(2, 5, 1), LEADER).unwrap();
    assert_eq!(info.log_append_time, NOW);
    let stored = RecordBatch::new(log.read(0, 1, 2).unwrap().to_bytes().unwrap()).unwrap();
    stored.verify_crc().unwrap();
    assert_eq!(stored.max_timestamp(), NOW);
}

#[test]
fn rolls_on_size_time_and_full_index() {
    let one = batch(1, NOW, 100).len() as u32;
    let h = Harness::new(LogConfig {
        segment_bytes: one * 3,
        ..LogConfig::default()
    });
    let log = h.open();
    for _ in 0..7 {
        log.append(&mut batch(1, NOW, 100), LEADER).unwrap();
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 3, 6]);
    // Reads never span segments.
    assert_eq!(
        offsets_in(&log.read(0, 1 << 20, 7).unwrap().to_bytes().unwrap()).len(),
        3
    );
    assert_eq!(
        offsets_in(&log.read(3, 1 << 20, 7).unwrap().to_bytes().unwrap())[0],
        (3, 3)
    );

    let h = Harness::new(LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    });
    let log = h.open();
    log.append(&mut batch(1, NOW, 1), LEADER).unwrap();
    log.append(&mut batch(1, NOW + 1000, 1), LEADER).unwrap();
    // segment.ms still counts from the first batch after a clean reopen.
    log.close().unwrap();
    let log = h.open();
    log.append(&mut batch(1, NOW + 1001, 1), LEADER).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);

    let h = Harness::new(LogConfig {
        index_interval_bytes: 1,
        segment_index_bytes: 16,
        ..LogConfig::default()
    });
    let log = h.open();
    for _ in 0..8 {
        log.append(&mut batch(1, NOW, 1), LEADER).unwrap();
    }
    assert!(log.segment_count() > 1);
    for offset in 0..8 {
        let slice = log.read(offset, 1, 8).unwrap().to_bytes().unwrap();
        assert_eq!(offsets_in(&slice), vec![(offset, offset)]);
    }
}

#[test]
fn clean_close_and_reopen_keeps_everything() {
    let h = Harness::new(LogConfig {
        segment_bytes: 1000,
        index_interval_bytes: 100,
        ..LogConfig::default()
    });
    let log = h.open();
    for i in 0..50 {
        log.append(&mut batch(2, NOW + i, 20), LEADER).unwrap();
    }
    let before = log.read(0, usize::MAX, 100).unwrap().to_bytes().unwrap();
    let segments = log.segment_base_offsets();
    log.close().unwrap();
    assert!(h.fs.exists(&h.dir.join(CLEAN_SHUTDOWN_FILE)));
    let log = h.open();
    // The marker stays until the first change.
    assert!(h.fs.exists(&h.dir.join(CLEAN_SHUTDOWN_FILE)));
    assert_eq!(log.segment_base_offsets(), segments);
    assert_eq!(log.log_end_offset(), 100);
    assert_eq!(
        log.read(0, usize::MAX, 100).unwrap().to_bytes().unwrap(),
        before
    );
    for offset in 0..100 {
        let slice = log.read(offset, 1, 100).unwrap().to_bytes().unwrap();
        assert_eq!(offsets_in(&slice)[0].0, offset & !1);
    }
    assert_eq!(
        log.fetch_offset_by_timestamp(NOW + 10)
            .unwrap()
            .unwrap()
            .offset,
        19
    );
    log.append(&mut batch(1, NOW, 1), LEADER).unwrap();
    assert_eq!(log.log_end_offset(), 101);
    assert!(!h.fs.exists(&h.dir.join(CLEAN_SHUTDOWN_FILE)));
    // A crash now must not trust the stale index files: the last segment is recovered.
    let crashed = h.open_on(&h.fs.crash());
    assert_eq!(crashed.log_end_offset(), 100);
    drop(crashed);
    // A clean open with no change, then a crash: the marker is still valid.
    log.close().unwrap();
    let idle = h.open();
    drop(idle);
    let log = h.open_on(&h.fs.crash());
    assert_eq!(log.log_end_offset(), 101);
}

#[test]
fn flush_messages_fsyncs_and_advances_recovery_point() {
    let h = Harness::new(LogConfig {
        flush_messages: 3,
        ..LogConfig::default()
    });
    let log = h.open();
    // The epoch's checkpoint is written once, before its first batch.
    log.assign_leader_epoch(3).unwrap();
    let syncs = h.fs.sync_count();
    log.append(&mut batch(2, NOW, 1), LEADER).unwrap();
    assert_eq!(h.fs.sync_count(), syncs);
    assert_eq!(log.recovery_point(), 0);
    log.append(&mut batch(1, NOW, 1), LEADER).unwrap();
    assert_eq!(h.fs.sync_count(), syncs + 1);
    assert_eq!(log.recovery_point(), 3);
    // What was fsynced survives a crash.
    let log2 = h.open_on(&h.fs.crash());
    assert_eq!(log2.log_end_offset(), 3);
}

#[test]
fn flush_ms_is_applied_on_append_and_tick() {
    let h = Harness::new(LogConfig {
        flush_ms: 100,
        ..LogConfig::default()
    });
    let log = h.open();
    log.append(&mut batch(1, NOW, 1), LEADER).unwrap();
    assert_eq!(log.recovery_point(), 0);
    h.clock.advance(100);
    log.flush_if_due().unwrap();
    assert_eq!(log.recovery_point(), 1);
    log.append(&mut batch(1, NOW, 1), LEADER).unwrap();
    h.clock.advance(100);
    log.append(&mut batch(1, NOW, 1), LEADER).unwrap();
    assert_eq!(log.recovery_point(), 3);
}

#[test]
fn failed_fsync_takes_the_log_offline() {
    let h = Harness::new(LogConfig {
        flush_messages: 1,
        ..LogConfig::default()
    });
    let log = h.open();
    log.append(&mut batch(1, NOW, 1), LEADER).unwrap();
    h.fs.fail_syncs(1);
    assert!(matches!(
        log.append(&mut batch(1, NOW, 1), LEADER),
        Err(Error::Io { .. })
    ));
    assert!(matches!(
        log.append(&mut batch(1, NOW, 1), LEADER),
        Err(Error::Offline { .. })
    ));
    assert!(matches!(log.read(0, 1, 1), Err(Error::Offline { .. })));
    let log = h.open_on(&h.fs.crash());
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn group_commit_shares_fsyncs_between_threads() {
    let h = Harness::new(LogConfig {
        flush_messages: 1,
        ..LogConfig::default()
    });
    let log = Arc::new(h.open());
    log.assign_leader_epoch(3).unwrap(); // so every fsync counted is a flush
    let syncs = h.fs.sync_count();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let log = log.clone();
            s.spawn(move || {
                for _ in 0..50 {
                    log.append(&mut batch(1, NOW, 1), LEADER).unwrap();
                }
            });
        }
    });
    assert_eq!(log.log_end_offset(), 200);
    assert_eq!(log.recovery_point(), 200);
    assert!(h.fs.sync_count() - syncs <= 200);
    let log = h.open_on(&h.fs.crash());
    assert_eq!(log.log_end_offset(), 200);
}

#[test]
fn truncate_to_and_fully() {
    let h = Harness::new(LogConfig {
        segment_bytes: 500,
        ..LogConfig::default()
    });
    let log = h.open();
    for _ in 0..20 {
        log.append(&mut batch(2, NOW, 30), LEADER).unwrap();
    }
    assert!(log.segment_count() > 2);
    log.truncate_to(25).unwrap(); // mid-batch: the batch [24, 25] goes
    assert_eq!(log.log_end_offset(), 24);
    assert_eq!(
        offsets_in(&log.read(22, 1, 24).unwrap().to_bytes().unwrap()),
        vec![(22, 23)]
    );
    let info = log.append(&mut batch(1, NOW, 1), LEADER).unwrap();
    assert_eq!(info.first_offset, 24);
    // Truncation survives a crash: nothing of the removed batches comes back.
    log.flush().unwrap();
    let crashed = h.open_on(&h.fs.crash());
    assert_eq!(crashed.log_end_offset(), 25);
    drop(crashed);

    log.truncate_fully_and_start_at(1000).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (1000, 1000));
    assert_eq!(log.segment_base_offsets(), vec![1000]);
    assert_eq!(
        log.append(&mut batch(1, NOW, 1), LEADER)
            .unwrap()
            .first_offset,
        1000
    );
    log.close().unwrap();
    let log = h.open();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (1000, 1001));
}

#[test]
fn replicated_appends_keep_offsets() {
    let h = Harness::new(LogConfig::default());
    let log = h.open();
    let mut b = batch(2, NOW, 1);
    batch::set_base_offset(&mut b, 10).unwrap();
    let info = log.append(&mut b, AppendOrigin::Replication).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (10, 11));
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(
        log.segment_base_offsets(),
        vec![0],
        "an empty segment takes the gap"
    );
    let mut old = batch(1, NOW, 1);
    batch::set_base_offset(&mut old, 11).unwrap();
    assert!(matches!(
        log.append(&mut old, AppendOrigin::Replication),
        Err(Error::OutOfOrderOffset { .. })
    ));
}

#[test]
fn retention_by_time_size_and_log_start_offset() {
    let one = batch(1, NOW, 100).len() as u32;
    let config = LogConfig {
        segment_bytes: one * 2,
        retention_ms: 1000,
        ..LogConfig::default()
    };
    let h = Harness::new(config.clone());
    let log = h.open();
    for i in 0..6 {
        log.append(&mut batch(1, NOW + i * 100, 100), LEADER)
            .unwrap();
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 4]);
    assert_eq!(log.apply_retention(6).unwrap(), 0);
    h.clock.advance(1150); // segment [0, 1] has max timestamp NOW + 100
    assert_eq!(
        log.apply_retention(1).unwrap(),
        0,
        "not below the high watermark"
    );
    assert_eq!(log.apply_retention(6).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 2);
    assert!(matches!(
        log.read(0, 1, 6),
        Err(Error::OffsetOutOfRange { .. })
    ));
    h.clock.advance(10_000); // everything expired: the active segment is replaced
    assert_eq!(log.apply_retention(6).unwrap(), 2);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (6, 6));
    assert_eq!(
        log.append(&mut batch(1, NOW, 1), LEADER)
            .unwrap()
            .first_offset,
        6
    );

    let h = Harness::new(LogConfig {
        retention_ms: -1,
        retention_bytes: i64::from(one) * 3,
        ..config
    });
    let log = h.open();
    for _ in 0..6 {
        log.append(&mut batch(1, NOW, 100), LEADER).unwrap();
    }
    assert_eq!(log.apply_retention(6).unwrap(), 1);
    assert_eq!(log.segment_base_offsets(), vec![2, 4]);

    assert_eq!(log.delete_records_before(3).unwrap(), 3);
    assert_eq!(log.segment_base_offsets(), vec![2, 4]);
    assert!(log.read(2, 1, 6).is_err());
    assert_eq!(
        offsets_in(&log.read(3, 1, 6).unwrap().to_bytes().unwrap()),
        vec![(3, 3)]
    );
    assert_eq!(log.delete_records_before(4).unwrap(), 4);
    assert_eq!(log.segment_base_offsets(), vec![4]);
    assert!(log.delete_records_before(7).is_err());
    log.close().unwrap();
    assert_eq!(h.open().log_start_offset(), 4);
}

/// Kafka's fallback: a segment without timestamps (largest timestamp -1, as old-format data
/// converted without them) is aged by its file's modification time.
#[test]
fn retention_by_time_falls_back_to_modification_time() {
    let mut h = Harness::new(LogConfig {
        retention_ms: 1000,
        ..LogConfig::default()
    });
    h.fs = FaultFs::with_clock(h.clock.clone());
    let log = h.open();
    let untimed = |n: usize| {
        let mut builder = RecordBatchBuilder::new();
        for _ in 0..n {
            builder.push(Record::new(-1, Some(b"k"), Some(b"v")));
        }
        builder.build().unwrap().to_vec()
    };
    log.append(&mut untimed(2), LEADER).unwrap();
    log.roll().unwrap();
    h.clock.advance(600);
    // Timestamps, when present, win over the file's time: this one is older than the clock.
    log.append(&mut batch(1, NOW - 5_000, 10), LEADER).unwrap();
    log.roll().unwrap();
    log.append(&mut untimed(1), LEADER).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 3]);
    assert_eq!(
        log.apply_retention(4).unwrap(),
        0,
        "segment 0 written 600 ms ago"
    );
    h.clock.advance(500);
    assert_eq!(log.apply_retention(4).unwrap(), 2);
    assert_eq!(log.segment_base_offsets(), vec![3]);
    // The active segment goes by its modification time too.
    h.clock.advance(1_000);
    assert_eq!(log.apply_retention(4).unwrap(), 1);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (4, 4));
}

#[test]
fn offsets_by_timestamp() {
    let h = Harness::new(LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 50,
        ..LogConfig::default()
    });
    let log = h.open();
    assert_eq!(log.fetch_offset_by_timestamp(0).unwrap(), None);
    assert_eq!(log.max_timestamp_offset().unwrap(), None);
    // Offsets 2i and 2i+1 have timestamps NOW + 10i and NOW + 10i + 1.
    for i in 0..30 {
        log.append(&mut batch(2, NOW + 10 * i, 5), LEADER).unwrap();
    }
    assert!(log.segment_count() > 2);
    for i in 0..30 {
        let exact = log
            .fetch_offset_by_timestamp(NOW + 10 * i + 1)
            .unwrap()
            .unwrap();
        assert_eq!(
            (exact.offset, exact.timestamp),
            (2 * i + 1, NOW + 10 * i + 1)
        );
        let between = log.fetch_offset_by_timestamp(NOW + 10 * i + 5).unwrap();
        if i < 29 {
            assert_eq!(between.unwrap().offset, 2 * i + 2);
        } else {
            assert_eq!(between, None);
        }
    }
    assert_eq!(log.fetch_offset_by_timestamp(0).unwrap().unwrap().offset, 0);
    let max = log.max_timestamp_offset().unwrap().unwrap();
    assert_eq!((max.offset, max.timestamp), (59, NOW + 291));
    // A batch whose newest record comes first.
    let mut builder = RecordBatchBuilder::new();
    builder.push(Record::new(NOW + 500, Some(b"a"), None));
    builder.push(Record::new(NOW + 1, Some(b"b"), None));
    log.append(&mut builder.build().unwrap().to_vec(), LEADER)
        .unwrap();
    let max = log.max_timestamp_offset().unwrap().unwrap();
    assert_eq!((max.offset, max.timestamp), (60, NOW + 500));
    // The same after recovery rebuilt the indexes from batch headers only.
    drop(log);
    let log = h.open_on(&h.fs.crash_with(|_, _, len| len));
    let max = log.max_timestamp_offset().unwrap().unwrap();
    assert_eq!((max.offset, max.timestamp), (60, NOW + 500));
}

fn entries(list: &[(i32, i64)]) -> Vec<EpochEntry> {
    list.iter()
        .map(|&(epoch, start_offset)| EpochEntry {
            epoch,
            start_offset,
        })
        .collect()
}

fn leader(leader_epoch: i32) -> AppendOrigin {
    AppendOrigin::Leader { leader_epoch }
}

/// A batch of `n` records as a leader of `epoch` stored it at `base`.
fn replicated(base: i64, n: usize, epoch: i32) -> Vec<u8> {
    let mut b = batch(n, NOW, 20);
    batch::set_base_offset(&mut b, base).unwrap();
    batch::set_partition_leader_epoch(&mut b, epoch).unwrap();
    b
}

/// The leader epoch entries a log on `fs` (as written so far, durable or not) gets from its
/// batch headers alone (no checkpoint).
fn rebuilt_epochs(h: &Harness, fs: &FaultFs) -> Vec<EpochEntry> {
    let copy = fs.crash_with(|_, _, len| len);
    let _ = copy.remove_file(&h.dir.join(checkpoint::LEADER_EPOCH_FILE));
    h.open_on(&copy).epoch_entries()
}

fn epoch_file(h: &Harness, fs: &FaultFs) -> String {
    String::from_utf8(
        fs.read_all(&h.dir.join(checkpoint::LEADER_EPOCH_FILE))
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn leader_epochs_follow_appends_of_both_origins() {
    let h = Harness::new(LogConfig::default());
    let log = h.open();
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0), EpochEndOffset::UNDEFINED);
    assert!(!h.fs.exists(&h.dir.join(checkpoint::LEADER_EPOCH_FILE)));
    log.append(&mut batch(2, NOW, 1), leader(3)).unwrap();
    // Appends within an epoch do not touch the checkpoint.
    let syncs = h.fs.sync_count();
    log.append(&mut batch(2, NOW, 1), leader(3)).unwrap();
    assert_eq!(h.fs.sync_count(), syncs);
    log.append(&mut batch(1, NOW, 1), leader(5)).unwrap();
    assert_eq!(log.epoch_entries(), entries(&[(3, 0), (5, 4)]));
    // A follower keeps the epochs its leader stamped, batch by batch.
    let mut two = replicated(5, 2, 5);
    two.extend(replicated(7, 1, 8));
    two.extend(replicated(8, 1, 8));
    log.append(&mut two, AppendOrigin::Replication).unwrap();
    log.append(&mut replicated(9, 3, 9), AppendOrigin::Replication)
        .unwrap();
    // A batch no leader stamped (epoch -1) is not an epoch.
    log.append(&mut replicated(12, 1, -1), AppendOrigin::Replication)
        .unwrap();
    let expected = entries(&[(3, 0), (5, 4), (8, 7), (9, 9)]);
    assert_eq!(log.epoch_entries(), expected);
    assert_eq!(log.latest_epoch(), Some(9));
    assert_eq!(epoch_file(&h, &h.fs), "0\n4\n3 0\n5 4\n8 7\n9 9\n");
    // An elected leader starts its epoch at the log end before appending.
    log.assign_leader_epoch(11).unwrap();
    assert_eq!(log.latest_epoch(), Some(11));
    assert_eq!(log.end_offset_for_epoch(9).end_offset, 13);
    log.append(&mut batch(1, NOW, 1), leader(11)).unwrap();
    assert_eq!(
        log.epoch_entries().last(),
        Some(&EpochEntry {
            epoch: 11,
            start_offset: 13
        })
    );
    assert_eq!(rebuilt_epochs(&h, &h.fs), log.epoch_entries());
}

/// OffsetForLeaderEpoch through the log: epochs 3 [0, 4), 5 [4, 7), 8 [7, 9), 9 [9, 12).
#[test]
fn end_offset_for_epoch_table() {
    let h = Harness::new(LogConfig::default());
    let log = h.open();
    log.append(&mut batch(4, NOW, 1), leader(3)).unwrap();
    log.append(&mut batch(3, NOW, 1), leader(5)).unwrap();
    log.append(&mut replicated(7, 2, 8), AppendOrigin::Replication)
        .unwrap();
    log.append(&mut replicated(9, 3, 9), AppendOrigin::Replication)
        .unwrap();
    let cases = [
        (-1, -1, -1),
        (0, 0, 0),
        (2, 2, 0),
        (3, 3, 4),
        (4, 3, 4),
        (5, 5, 7),
        (7, 5, 7),
        (8, 8, 9),
        (9, 9, 12),
        (10, -1, -1),
    ];
    for (requested, epoch, end) in cases {
        assert_eq!(
            log.end_offset_for_epoch(requested),
            EpochEndOffset {
                leader_epoch: epoch,
                end_offset: end
            },
            "requested {requested}"
        );
    }
    // Retention took epoch 3's offsets: asking for it answers with where the log now begins.
    log.roll().unwrap();
    log.delete_records_before(5).unwrap();
    assert_eq!(
        log.end_offset_for_epoch(3),
        EpochEndOffset {
            leader_epoch: 3,
            end_offset: 5
        }
    );
    assert_eq!(log.epoch_entries(), entries(&[(5, 5), (8, 7), (9, 9)]));
}

#[test]
fn leader_epochs_follow_truncation_retention_and_deletion() {
    let one = batch(1, NOW, 100).len() as u32;
    let h = Harness::new(LogConfig {
        segment_bytes: one * 2,
        retention_ms: 1000,
        ..LogConfig::default()
    });
    let log = h.open();
    // Offsets 0..8, epochs 1 [0, 3), 2 [3, 6), 4 [6, 8); segments of two offsets.
    for (epoch, n) in [(1, 3), (2, 3), (4, 2)] {
        for _ in 0..n {
            log.append(&mut batch(1, NOW, 100), leader(epoch)).unwrap();
        }
    }
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 4, 6]);
    assert_eq!(log.epoch_entries(), entries(&[(1, 0), (2, 3), (4, 6)]));

    log.truncate_to(7).unwrap();
    assert_eq!(log.epoch_entries(), entries(&[(1, 0), (2, 3), (4, 6)]));
    log.truncate_to(6).unwrap();
    assert_eq!(log.epoch_entries(), entries(&[(1, 0), (2, 3)]));
    assert_eq!(epoch_file(&h, &h.fs), "0\n2\n1 0\n2 3\n");
    log.append(&mut replicated(6, 2, 5), AppendOrigin::Replication)
        .unwrap();
    assert_eq!(log.epoch_entries(), entries(&[(1, 0), (2, 3), (5, 6)]));

    // Retention deletes segment [0, 2): epoch 1 now starts at the log start offset.
    h.clock.advance(500);
    log.append(&mut batch(1, NOW + 10_000, 100), leader(5))
        .unwrap();
    h.clock.advance(1000);
    assert!(log.apply_retention(8).unwrap() > 0);
    let start = log.log_start_offset();
    assert!(start > 0);
    assert_eq!(log.epoch_entries(), rebuilt_epochs(&h, &h.fs));
    assert_eq!(log.epoch_entries().first().unwrap().start_offset, start);

    log.delete_records_before(7).unwrap();
    assert_eq!(log.epoch_entries(), entries(&[(5, 7)]));
    assert_eq!(epoch_file(&h, &h.fs), "0\n1\n5 7\n");

    log.truncate_fully_and_start_at(100).unwrap();
    assert!(log.epoch_entries().is_empty());
    assert_eq!(epoch_file(&h, &h.fs), "0\n0\n");
    log.append(&mut batch(1, NOW, 1), leader(6)).unwrap();
    assert_eq!(log.epoch_entries(), entries(&[(6, 100)]));
    // A truncation to the first segment's base goes through truncate fully.
    log.truncate_to(100).unwrap();
    assert!(log.epoch_entries().is_empty());
    log.close().unwrap();
    assert!(h.open().epoch_entries().is_empty());
}

#[test]
fn compaction_leaves_leader_epochs_alone() {
    let h = Harness::new(LogConfig {
        cleanup_policy: crate::CleanupPolicy {
            delete: false,
            compact: true,
        },
        segment_bytes: 300,
        min_compaction_lag_ms: 0,
        ..LogConfig::default()
    });
    let log = h.open();
    for epoch in [1, 1, 2, 2, 3, 3, 4] {
        log.append(&mut batch(3, NOW - 1000, 10), leader(epoch))
            .unwrap();
    }
    let before = log.epoch_entries();
    assert_eq!(before, entries(&[(1, 0), (2, 6), (3, 12), (4, 18)]));
    log.flush().unwrap(); // compaction only cleans durable segments
    let stats = log.compact(log.log_end_offset()).unwrap();
    assert!(stats.cleaned_up_to > 0, "{stats:?}");
    assert_eq!(log.epoch_entries(), before);
    log.close().unwrap();
    assert_eq!(h.open().epoch_entries(), before);
}

#[test]
fn leader_epochs_survive_clean_reopen_and_crashes() {
    let h = Harness::new(LogConfig {
        segment_bytes: 600,
        ..LogConfig::default()
    });
    let log = h.open();
    for epoch in [1, 1, 2, 2, 2, 4] {
        log.append(&mut batch(2, NOW, 50), leader(epoch)).unwrap();
    }
    let durable = log.epoch_entries();
    log.close().unwrap();
    let log = h.open();
    assert_eq!(log.epoch_entries(), durable);

    // A crash loses unflushed batches of a new epoch: the checkpoint has the epoch (it was
    // written first), and open drops it.
    log.append(&mut batch(2, NOW, 50), leader(7)).unwrap();
    assert_eq!(log.latest_epoch(), Some(7));
    let crashed = h.fs.crash();
    assert!(epoch_file(&h, &crashed).ends_with("7 12\n"));
    let reopened = h.open_on(&crashed);
    assert_eq!(reopened.log_end_offset(), 12);
    assert_eq!(reopened.epoch_entries(), durable);
    assert_eq!(epoch_file(&h, &crashed), "0\n3\n1 0\n2 4\n4 10\n");
    drop(reopened);

    // Torn tails: whatever prefix of the un-fsynced bytes survives, the entries are those of
    // the batches that did.
    log.append(&mut batch(2, NOW, 50), leader(7)).unwrap();
    log.append(&mut batch(2, NOW, 50), leader(8)).unwrap();
    for extra in (0..400).step_by(23) {
        let crashed = h.fs.crash_with(|_, synced, _| synced + extra);
        let expected = rebuilt_epochs(&h, &crashed);
        let reopened = h.open_on(&crashed);
        assert_eq!(reopened.epoch_entries(), expected, "{extra} bytes kept");
        assert!(
            reopened
                .epoch_entries()
                .iter()
                .all(|e| e.start_offset < reopened.log_end_offset())
        );
    }
    let all = h.fs.crash_with(|_, _, len| len);
    assert_eq!(
        h.open_on(&all).epoch_entries(),
        entries(&[(1, 0), (2, 4), (4, 10), (7, 12), (8, 16)])
    );
}

#[test]
fn missing_or_corrupt_epoch_checkpoint_is_rebuilt() {
    let h = Harness::new(LogConfig {
        segment_bytes: 400,
        ..LogConfig::default()
    });
    let log = h.open();
    for epoch in [1, 1, 3, 3, 3, 6, 6] {
        log.append(&mut batch(2, NOW, 40), leader(epoch)).unwrap();
    }
    log.delete_records_before(3).unwrap();
    let expected = entries(&[(1, 3), (3, 4), (6, 10)]);
    assert_eq!(log.epoch_entries(), expected);
    assert!(log.segment_count() > 2);
    log.close().unwrap();
    let path = h.dir.join(checkpoint::LEADER_EPOCH_FILE);

    // Missing (a log written before the file existed), after a clean shutdown.
    h.fs.remove_file(&path).unwrap();
    assert_eq!(h.open().epoch_entries(), expected);
    assert_eq!(epoch_file(&h, &h.fs), "0\n3\n1 3\n3 4\n6 10\n");

    for garbage in [
        &b"0\n3\n1 3\n"[..],
        b"",
        b"\xff\xfe",
        b"7\n0\n",
        b"0\n2\n5 0\n1 9\n",
    ] {
        h.fs.write_all(&path, garbage);
        let log = h.open();
        assert_eq!(log.epoch_entries(), expected, "{garbage:?}");
        assert_eq!(epoch_file(&h, &h.fs), "0\n3\n1 3\n3 4\n6 10\n");
        drop(log);
    }
    // Corrupt after a crash (recovery scanning too).
    h.fs.write_all(&path, b"junk");
    let log = h.open_on(&h.fs.crash());
    assert_eq!(log.epoch_entries(), expected);
}

/// Guards against a checkpoint that lags its log (written by a version that did not assign
/// before appending): recovery adds the newer epochs of the batches it scans.
#[test]
fn recovery_adds_epochs_a_checkpoint_lacks() {
    let h = Harness::new(LogConfig::default());
    let log = h.open();
    log.append(&mut batch(2, NOW, 1), leader(1)).unwrap();
    log.append(&mut batch(2, NOW, 1), leader(2)).unwrap();
    log.flush().unwrap();
    checkpoint::write_leader_epochs(&h.fs, &h.dir, &entries(&[(1, 0)])).unwrap();
    let log = h.open_on(&h.fs.crash());
    assert_eq!(log.epoch_entries(), entries(&[(1, 0), (2, 2)]));
}

/// Every crash point of a truncation, an epoch change and retention: tearing the writes at
/// each byte budget, then crashing, leaves a log whose epochs match its batches.
#[test]
fn crash_at_any_write_keeps_epochs_consistent() {
    let one = batch(1, NOW, 100).len() as u32;
    let config = LogConfig {
        segment_bytes: one * 2,
        retention_ms: 1000,
        ..LogConfig::default()
    };
    let mut points = 0;
    for op in 0..4 {
        for budget in 0.. {
            let h = Harness::new(config.clone());
            let log = h.open();
            for epoch in [1, 1, 2, 2, 3, 3] {
                log.append(&mut batch(1, NOW, 100), leader(epoch)).unwrap();
            }
            log.flush().unwrap();
            log.append(&mut batch(1, NOW, 100), leader(3)).unwrap();
            h.fs.set_write_budget(Some(budget));
            let done = match op {
                0 => log.truncate_to(3),
                3 => log.truncate_fully_and_start_at(100),
                1 => log
                    .append(&mut replicated(7, 1, 9), AppendOrigin::Replication)
                    .map(drop),
                _ => {
                    h.clock.advance(2000);
                    log.apply_retention(4).map(drop)
                }
            };
            let crashed = h.fs.crash();
            let expected = rebuilt_epochs(&h, &crashed);
            let reopened = h.open_on(&crashed);
            assert_eq!(
                reopened.epoch_entries(),
                expected,
                "op {op}, budget {budget}"
            );
            points += 1;
            if done.is_ok() {
                break;
            }
        }
    }
    assert!(points > 6);
}

#[test]
fn flush_to_and_flushed_offset() {
    let h = Harness::new(LogConfig::default());
    let log = h.open();
    log.append(&mut batch(3, NOW, 1), LEADER).unwrap();
    log.append(&mut batch(2, NOW, 1), LEADER).unwrap();
    assert_eq!(log.flushed_offset(), 0);
    log.flush_to(2).unwrap();
    // One fsync covers everything written so far.
    assert_eq!(log.flushed_offset(), 5);
    let syncs = h.fs.sync_count();
    log.flush_to(5).unwrap();
    assert_eq!(h.fs.sync_count(), syncs);
    assert_eq!(h.open_on(&h.fs.crash()).log_end_offset(), 5);
}

// The transaction index (`.txnindex`).

/// A transactional data batch of `n` keyed records from producer `pid`.
fn txn_batch(pid: i64, n: usize, key: u8) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new();
    builder.producer(pid, 0, 0).transactional(true);
    for _ in 0..n {
        builder.push(Record::new(NOW, Some(&[b'k', key]), Some(b"txn")));
    }
    builder.build().unwrap().to_vec()
}

/// A marker batch ending producer `pid`'s transaction.
fn marker(pid: i64, commit: bool) -> Vec<u8> {
    let marker = if commit {
        weir_records::EndTransactionMarker::commit(0)
    } else {
        weir_records::EndTransactionMarker::abort(0)
    };
    marker.batch_builder(pid, 0, NOW).build().unwrap().to_vec()
}

/// Appends producer `pid`'s transaction of `n` records and its ABORT marker, recording the
/// aborted transaction as the broker does; returns the entry.
fn aborted(log: &Log, pid: i64, n: usize) -> AbortedTxn {
    let first = log
        .append(&mut txn_batch(pid, n, 0), LEADER)
        .unwrap()
        .first_offset;
    let last = log
        .append(&mut marker(pid, false), LEADER)
        .unwrap()
        .first_offset;
    let entry = AbortedTxn {
        producer_id: pid,
        first_offset: first,
        last_offset: last,
        last_stable_offset: last + 1,
    };
    assert!(log.add_aborted_txn(entry).unwrap());
    entry
}

fn txn_index_file(h: &Harness, fs: &FaultFs, base: i64) -> Option<Vec<u8>> {
    fs.read_all(&file_path(&h.dir, base, TXN_INDEX_SUFFIX))
}

#[test]
fn aborted_transactions_are_indexed_and_survive_close_and_crash() {
    let h = Harness::new(LogConfig::default());
    let log = h.open();
    let a = aborted(&log, 7, 3); // [0, 2] aborted by 3
    log.append(&mut batch(2, NOW, 1), LEADER).unwrap(); // 4, 5
    // Idempotent: the broker replays markers and adds again.
    assert!(!log.add_aborted_txn(a).unwrap());
    let b = aborted(&log, 8, 1); // [6] aborted by 7
    assert_eq!(log.aborted_transactions(0, 8), vec![a, b]);
    assert_eq!(log.aborted_transactions(4, 6), vec![]);
    assert_eq!(log.aborted_transactions(3, 7), vec![a, b]);
    assert_eq!(log.aborted_transactions(0, 1), vec![a]);
    // An entry for a marker not in the log is refused.
    assert!(
        log.add_aborted_txn(AbortedTxn {
            last_offset: 100,
            ..a
        })
        .is_err()
    );
    assert_eq!(txn_index_file(&h, &h.fs, 0).unwrap().len(), 68);
    log.flush().unwrap();
    // Flushed: a crash keeps both.
    assert_eq!(h.open_on(&h.fs.crash()).aborted_txn_entries(), vec![a, b]);
    log.close().unwrap();
    let log = h.open();
    assert_eq!(log.aborted_txn_entries(), vec![a, b]);
    assert_eq!(log.aborted_transactions(0, 8), vec![a, b]);
}

#[test]
fn recovery_drops_torn_entries_and_entries_past_the_log_end() {
    let h = Harness::new(LogConfig::default());
    let log = h.open();
    let a = aborted(&log, 7, 2);
    log.flush().unwrap();
    let b = aborted(&log, 8, 2);
    // The second entry torn in the crash (its marker kept): only the first survives, and
    // the broker restores the second when it replays the marker.
    let torn = h.fs.crash_with(|path, synced, len| {
        if path.to_string_lossy().ends_with(TXN_INDEX_SUFFIX) {
            synced + 20
        } else {
            len
        }
    });
    let recovered = h.open_on(&torn);
    assert_eq!(recovered.log_end_offset(), 6);
    assert_eq!(recovered.aborted_txn_entries(), vec![a]);
    assert_eq!(txn_index_file(&h, &torn, 0).unwrap().len(), 34);
    assert!(recovered.add_aborted_txn(b).unwrap());
    assert_eq!(recovered.aborted_txn_entries(), vec![a, b]);
    drop(recovered);
    // The second entry whole, its marker lost: the entry goes, durably.
    let lost = h.fs.crash_with(|path, synced, len| {
        if path.to_string_lossy().ends_with(TXN_INDEX_SUFFIX) {
            len
        } else {
            synced
        }
    });
    let recovered = h.open_on(&lost);
    assert_eq!(recovered.log_end_offset(), 3);
    assert_eq!(recovered.aborted_txn_entries(), vec![a]);
    recovered.append(&mut batch(5, NOW, 1), LEADER).unwrap();
    drop(recovered);
    let again = h.open_on(&lost.crash());
    assert_eq!(again.aborted_txn_entries(), vec![a]);
}

#[test]
fn truncation_removes_entries_from_the_point_durably() {
    let h = Harness::new(LogConfig {
        segment_bytes: 300,
        ..LogConfig::default()
    });
    let log = h.open();
    let mut entries = Vec::new();
    for pid in 0..6 {
        entries.push(aborted(&log, pid, 2));
    }
    assert!(log.segment_count() > 2);
    assert_eq!(log.aborted_txn_entries(), entries);
    // Cut at the marker of the third transaction: it and the later ones go.
    log.truncate_to(entries[2].last_offset).unwrap();
    assert_eq!(log.aborted_txn_entries(), entries[..2].to_vec());
    // New batches at the same offsets: a crash must not bring the old entries back.
    for _ in 0..8 {
        log.append(&mut batch(1, NOW, 1), LEADER).unwrap();
    }
    log.flush().unwrap();
    let crashed = h.open_on(&h.fs.crash_with(|_, _, len| len));
    assert_eq!(crashed.aborted_txn_entries(), entries[..2].to_vec());
    drop(crashed);
    log.truncate_fully_and_start_at(100).unwrap();
    assert_eq!(log.aborted_txn_entries(), vec![]);
    assert!(
        h.fs.list_dir(&h.dir)
            .unwrap()
            .iter()
            .all(|n| !n.ends_with(TXN_INDEX_SUFFIX))
    );
}

#[test]
fn deleted_segments_take_their_transaction_index() {
    let h = Harness::new(LogConfig {
        segment_bytes: 300,
        ..LogConfig::default()
    });
    let log = h.open();
    let mut entries = Vec::new();
    for pid in 0..6 {
        entries.push(aborted(&log, pid, 2));
    }
    let bases = log.segment_base_offsets();
    assert!(txn_index_file(&h, &h.fs, bases[0]).is_some());
    log.delete_records_before(bases[1]).unwrap();
    assert_eq!(log.segment_base_offsets()[0], bases[1]);
    assert!(txn_index_file(&h, &h.fs, bases[0]).is_none());
    assert!(
        log.aborted_txn_entries()
            .iter()
            .all(|e| e.last_offset >= bases[1])
    );
    // A search from the new start still finds the rest.
    assert_eq!(
        log.aborted_transactions(bases[1], log.log_end_offset()),
        log.aborted_txn_entries()
    );
}

/// A search stops at the first segment with an entry whose last stable offset passes the upper
/// bound, and looks no further.
#[test]
fn aborted_transactions_search_stops_early() {
    let h = Harness::new(LogConfig {
        segment_bytes: 300,
        ..LogConfig::default()
    });
    let log = h.open();
    let early = aborted(&log, 1, 2); // [0, 1] by 2, LSO 3
    log.roll().unwrap();
    // A later entry claiming to start early; its segment is never read because the first
    // entry says every transaction below 2 had ended by offset 3.
    log.append(&mut batch(1, NOW, 1), LEADER).unwrap();
    let late = log
        .append(&mut marker(2, false), LEADER)
        .unwrap()
        .first_offset;
    log.add_aborted_txn(AbortedTxn {
        producer_id: 2,
        first_offset: 0,
        last_offset: late,
        last_stable_offset: late + 1,
    })
    .unwrap();
    assert_eq!(log.aborted_transactions(0, 2), vec![early]);
    assert_eq!(log.aborted_transactions(0, 4).len(), 2);
}

#[test]
fn compaction_drops_aborted_data_and_keeps_the_index() {
    let h = Harness::new(LogConfig {
        segment_bytes: 400,
        cleanup_policy: crate::CleanupPolicy::COMPACT,
        ..LogConfig::default()
    });
    let log = h.open();
    // Committed value for key 0, then an aborted transaction writing key 0 again, then more.
    log.append(&mut txn_batch(1, 1, 0), LEADER).unwrap();
    log.append(&mut marker(1, true), LEADER).unwrap();
    let a = aborted(&log, 2, 2);
    for _ in 0..6 {
        log.append(&mut txn_batch(3, 1, 9), LEADER).unwrap();
        log.append(&mut marker(3, true), LEADER).unwrap();
    }
    log.roll().unwrap();
    let before_entries = log.aborted_txn_entries();
    assert_eq!(before_entries, vec![a]);
    let stats = log.compact(log.log_end_offset()).unwrap();
    assert!(stats.segments > 1, "{stats:?}");
    let bytes = {
        let mut all = Vec::new();
        let mut from = log.log_start_offset();
        while from < log.log_end_offset() {
            let slice = log.read(from, 1 << 20, i64::MAX).unwrap();
            all.extend_from_slice(&slice.to_bytes().unwrap());
            from = slice.next_offset();
        }
        Bytes::from(all)
    };
    let mut committed_key0 = 0;
    for batch in weir_records::RecordBatches::new(bytes) {
        let batch = batch.unwrap();
        let h = batch.header();
        assert!(
            h.producer_id != 2 || h.attributes.is_control(),
            "aborted data survived compaction"
        );
        if h.producer_id == 1 && !h.attributes.is_control() {
            committed_key0 += 1;
        }
    }
    // The aborted record did not supersede the committed one.
    assert_eq!(committed_key0, 1);
    // The index entry is kept (merged into the first output segment), also after a reopen.
    assert_eq!(log.aborted_txn_entries(), vec![a]);
    log.close().unwrap();
    assert_eq!(h.open().aborted_txn_entries(), vec![a]);
}

/// Every batch of the log, in offset order.
fn all_batches(log: &Log) -> Vec<weir_records::batch::BatchHeader> {
    let mut all = Vec::new();
    let mut from = log.log_start_offset();
    while from < log.log_end_offset() {
        let slice = log.read(from, 1 << 20, i64::MAX).unwrap();
        all.extend_from_slice(&slice.to_bytes().unwrap());
        from = slice.next_offset();
    }
    weir_records::RecordBatches::new(Bytes::from(all))
        .map(|b| *b.unwrap().header())
        .collect()
}

/// Markers (producer, offset, delete horizon stamped) in the log.
fn markers(log: &Log) -> Vec<(i64, i64, bool)> {
    all_batches(log)
        .iter()
        .filter(|h| h.attributes.is_control())
        .map(|h| {
            (
                h.producer_id,
                h.base_offset,
                h.attributes.has_delete_horizon(),
            )
        })
        .collect()
}

/// As Kafka's cleaner: a marker whose transaction has no data left is stamped with a delete
/// horizon by one pass and removed by a pass after it, and an ABORT marker's transaction index
/// entry goes with it (it would otherwise make read_committed consumers skip the producer's
/// later batches). Markers of transactions with data stay, unstamped.
#[test]
fn compaction_removes_markers_of_empty_transactions_after_the_delete_horizon() {
    let h = Harness::new(LogConfig {
        segment_bytes: 400,
        cleanup_policy: crate::CleanupPolicy::COMPACT,
        delete_retention_ms: 1_000,
        ..LogConfig::default()
    });
    let log = h.open();
    // Producer 1 commits key 0 (superseded later); producer 2 aborts; producer 3 commits key 5
    // (kept); producer 4 aborts again later, after its first abort's marker.
    log.append(&mut txn_batch(1, 1, 0), LEADER).unwrap();
    log.append(&mut marker(1, true), LEADER).unwrap(); // 1
    let a = aborted(&log, 2, 2); // data 2-3, marker 4
    log.append(&mut txn_batch(3, 1, 5), LEADER).unwrap();
    log.append(&mut marker(3, true), LEADER).unwrap(); // 6
    let b = aborted(&log, 4, 1); // data 7, marker 8
    log.append(&mut txn_batch(1, 1, 0), LEADER).unwrap(); // 9: supersedes key 0
    log.append(&mut marker(1, true), LEADER).unwrap(); // 10
    log.roll().unwrap();
    let end = log.log_end_offset();
    assert_eq!(log.aborted_txn_entries(), vec![a, b]);

    // First pass: the empty transactions' markers are stamped, nothing else goes.
    let stats = log.compact(end).unwrap();
    assert!(stats.delete_horizon > 0, "{stats:?}");
    assert_eq!(
        markers(&log),
        vec![
            (1, 1, true),
            (2, 4, true),
            (3, 6, false),
            (4, 8, true),
            (1, 10, false)
        ]
    );
    assert_eq!(log.aborted_txn_entries(), vec![a, b]);
    assert!(!log.delete_horizon_passed());

    // Before the horizon nothing changes; after it the stamped markers go with their entries.
    h.clock.advance(500);
    log.compact(end).unwrap();
    assert_eq!(markers(&log).len(), 5);
    h.clock.advance(600);
    assert!(log.delete_horizon_passed());
    log.compact(end).unwrap();
    assert_eq!(markers(&log), vec![(3, 6, false), (1, 10, false)]);
    assert_eq!(log.aborted_txn_entries(), vec![]);
    assert_eq!(log.aborted_transactions(0, end), vec![]);
    // The data that stayed is the committed records of producers 3 and 1 (the later key 0).
    let data: Vec<(i64, i64)> = all_batches(&log)
        .iter()
        .filter(|h| !h.attributes.is_control())
        .map(|h| (h.producer_id, h.base_offset))
        .collect();
    assert_eq!(data, vec![(3, 5), (1, 9)]);
    log.close().unwrap();
    let log = h.open();
    assert_eq!(log.aborted_txn_entries(), vec![]);
    assert_eq!(markers(&log), vec![(3, 6, false), (1, 10, false)]);
}

/// A swap interrupted by a crash completes on open with the transaction index entries of the
/// markers the swapped segment still holds, and no others.
#[test]
fn interrupted_swap_drops_entries_of_removed_markers() {
    let h = Harness::new(LogConfig {
        cleanup_policy: crate::CleanupPolicy::COMPACT,
        ..LogConfig::default()
    });
    let log = h.open();
    let a = aborted(&log, 1, 1); // data 0, marker 1
    let b = aborted(&log, 2, 1); // data 2, marker 3
    log.roll().unwrap();
    let base = log.segment_base_offsets()[0];
    let segment = h.fs.read_all(&file_path(&h.dir, base, LOG_SUFFIX)).unwrap();
    log.close().unwrap();
    // Stage a cleaned segment without producer 1's data and marker, as a committed swap.
    let kept: Vec<u8> = {
        let mut out = Vec::new();
        for batch in weir_records::RecordBatches::new(Bytes::from(segment)) {
            let batch = batch.unwrap();
            if batch.header().producer_id != 1 {
                out.extend_from_slice(batch.as_bytes());
            }
        }
        out
    };
    let swap = file_path(&h.dir, base, ".log.swap");
    let staged = h.fs.open(&swap, true).unwrap();
    staged.write_all_at(&kept, 0).unwrap();
    staged.sync_data().unwrap();
    h.fs.sync_dir(&h.dir).unwrap();
    let log = h.open();
    assert_eq!(log.aborted_txn_entries(), vec![b]);
    assert_ne!(a, b);
    drop(log);
    assert_eq!(h.open_on(&h.fs.crash()).aborted_txn_entries(), vec![b]);
}

/// A merging swap interrupted after its commit point (the swap file renamed) completes on open,
/// carrying every member's transaction index entries into the merged segment's index.
#[test]
fn interrupted_merge_keeps_transaction_index_entries() {
    let h = Harness::new(LogConfig {
        cleanup_policy: crate::CleanupPolicy::COMPACT,
        ..LogConfig::default()
    });
    let log = h.open();
    let mut entries = Vec::new();
    for pid in 0..3 {
        entries.push(aborted(&log, pid, 1));
        log.roll().unwrap();
    }
    let bases = log.segment_base_offsets();
    log.close().unwrap();
    // Stage the three first segments merged as a committed swap; the members stay.
    let mut merged = Vec::new();
    for base in &bases[..3] {
        merged.extend(
            h.fs.read_all(&file_path(&h.dir, *base, LOG_SUFFIX))
                .unwrap(),
        );
    }
    let swap = h
        .dir
        .join(format!("{:020}-{:020}.log.swap", bases[0], bases[2]));
    let staged = h.fs.open(&swap, true).unwrap();
    staged.write_all_at(&merged, 0).unwrap();
    staged.sync_data().unwrap();
    h.fs.sync_dir(&h.dir).unwrap();
    let log = h.open();
    assert_eq!(log.segment_base_offsets().len(), bases.len() - 2);
    assert_eq!(log.aborted_txn_entries(), entries);
    assert!(txn_index_file(&h, &h.fs, bases[1]).is_none());
    drop(log);
    assert_eq!(h.open_on(&h.fs.crash()).aborted_txn_entries(), entries);
}

/// A [`FaultFs`] whose next directory fsync, once armed, waits until the test lets it go:
/// a checkpoint write held in the middle.
#[derive(Debug)]
struct HeldDirSyncFs {
    inner: FaultFs,
    armed: AtomicBool,
    entered: std::sync::mpsc::SyncSender<()>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl FileSystem for HeldDirSyncFs {
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn open(&self, path: &Path, create: bool) -> std::io::Result<Arc<dyn File>> {
        self.inner.open(path, create)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn modified_ms(&self, path: &Path) -> std::io::Result<i64> {
        self.inner.modified_ms(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        if self.armed.swap(false, Ordering::SeqCst) {
            let _ = self.entered.send(());
            let _ = self.release.lock().recv();
        }
        self.inner.sync_dir(path)
    }
}

#[test]
fn an_append_does_not_wait_for_a_checkpoint_being_written() {
    let h = Harness::new(LogConfig::default());
    let (entered_tx, entered) = std::sync::mpsc::sync_channel(1);
    let (release, release_rx) = std::sync::mpsc::sync_channel(1);
    let fs = Arc::new(HeldDirSyncFs {
        inner: h.fs.clone(),
        armed: AtomicBool::new(false),
        entered: entered_tx,
        release: Mutex::new(release_rx),
    });
    let log = Arc::new(
        Log::open_with(
            &h.dir,
            LogOptions {
                config: h.config.clone(),
                fs: fs.clone(),
                clock: h.clock.clone(),
                handles: crate::HandleCache::new(2),
                cleaner_dedupe_buffer_size: crate::DEFAULT_DEDUPE_BUFFER_SIZE,
            },
        )
        .unwrap(),
    );
    log.append(&mut batch(3, NOW, 10), LEADER).unwrap();
    log.flush().unwrap();

    // The checkpoint (recovery point 3) stops in its directory fsync, after the rename.
    fs.armed.store(true, Ordering::SeqCst);
    let checkpointing = std::thread::spawn({
        let log = log.clone();
        move || log.checkpoint()
    });
    entered
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the checkpoint reaches its directory fsync");

    let (appended_tx, appended) = std::sync::mpsc::channel();
    let appending = std::thread::spawn({
        let log = log.clone();
        move || {
            let info = log.append(&mut batch(2, NOW, 10), LEADER).unwrap();
            let _ = appended_tx.send(info.first_offset);
        }
    });
    let first_offset = appended.recv_timeout(std::time::Duration::from_secs(5));
    release.send(()).unwrap();
    checkpointing.join().unwrap().unwrap();
    appending.join().unwrap();
    assert_eq!(
        first_offset.ok(),
        Some(3),
        "the append waited for the checkpoint's fsyncs"
    );

    // Writers stay in order: the next checkpoint holds the later recovery point.
    log.flush().unwrap();
    log.checkpoint().unwrap();
    assert_eq!(
        checkpoint::read(&*fs, &h.dir).map(|c| c.recovery_point),
        Some(5)
    );
}
