//! Compaction: the latest record per key survives with its offset, tombstones go after
//! `delete.retention.ms`, and an interrupted swap completes on open.

#![expect(clippy::unwrap_used, reason = "helpers fail the test on error")]

mod common;

use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use weir_log::fault::FaultFs;
use weir_log::{CleanupPolicy, FileSystem, Log, LogConfig, ManualClock};
use weir_records::{Record, RecordBatchBuilder};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 64,
        cleanup_policy: CleanupPolicy::COMPACT,
        delete_retention_ms: 1_000,
        ..LogConfig::default()
    }
}

/// A batch of `(key, value)` records; `None` values are tombstones.
fn keyed(records: &[(u8, Option<u16>)], ts: i64) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new();
    for &(key, value) in records {
        let value = value.map(|v| format!("value-{v}"));
        builder.push(Record::new(
            ts,
            Some(&[b'k', key]),
            value.as_deref().map(str::as_bytes),
        ));
    }
    builder.build().unwrap().to_vec()
}

/// Every record in the log as offset → (key, value).
fn records(log: &Log) -> BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>)> {
    let mut out = BTreeMap::new();
    for batch in all_batches(log) {
        for r in batch.records().unwrap() {
            let r = r.unwrap();
            out.insert(
                r.offset,
                (r.key.unwrap().to_vec(), r.value.map(|v| v.to_vec())),
            );
        }
    }
    out
}

fn check_compacted(
    before: &BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>)>,
    after: &BTreeMap<i64, (Vec<u8>, Option<Vec<u8>>)>,
    cleaned_below: i64,
) {
    // Nothing above the cleaned range changes, and every surviving record is the original one.
    for (offset, record) in after {
        assert_eq!(before.get(offset), Some(record), "offset {offset} changed");
    }
    for (offset, record) in before.range(cleaned_below..) {
        assert_eq!(after.get(offset), Some(record));
    }
    // The latest record of every key in the cleaned range survives, unless it is a tombstone.
    let mut latest: BTreeMap<&Vec<u8>, (i64, &Option<Vec<u8>>)> = BTreeMap::new();
    for (offset, (key, value)) in before.range(..cleaned_below) {
        latest.insert(key, (*offset, value));
    }
    for (key, (offset, value)) in latest {
        if value.is_some() {
            assert!(
                after.contains_key(&offset),
                "latest record of {key:?} at {offset} lost"
            );
        }
        for (o, (k, _)) in after.range(..cleaned_below) {
            assert!(
                k != key || *o == offset,
                "superseded record of {key:?} at {o} kept"
            );
        }
    }
}

#[test]
fn keeps_latest_per_key_and_drops_old_tombstones() {
    let fs = FaultFs::new();
    let clock = Arc::new(ManualClock::new(NOW));
    let log = open(&fs, &config(), &clock);
    for round in 0..6u16 {
        log.append(
            &mut keyed(&[(0, Some(round)), (1, Some(round)), (2, Some(round))], NOW),
            LEADER,
        )
        .unwrap();
    }
    log.append(&mut keyed(&[(1, None)], NOW), LEADER).unwrap();
    log.roll().unwrap();
    log.append(&mut keyed(&[(3, Some(0))], NOW), LEADER)
        .unwrap();
    let before = records(&log);
    let leo = log.log_end_offset();
    let stats = log.compact(leo).unwrap();
    assert!(
        stats.segments > 0 && stats.records_removed > 0 && stats.bytes_after < stats.bytes_before
    );
    let after = records(&log);
    let active_base = *log.segment_base_offsets().last().unwrap();
    check_compacted(&before, &after, active_base);
    // The young tombstone for key 1 stays; its older values are gone.
    assert_eq!(after.values().filter(|(k, _)| k == b"k\x01").count(), 1);
    assert!(after.values().any(|(k, v)| k == b"k\x01" && v.is_none()));
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(
        log.read(0, 1, leo).unwrap().first_offset(),
        *after.keys().next().unwrap()
    );

    // After delete.retention.ms the tombstone goes too.
    clock.advance(1_001);
    log.compact(leo).unwrap();
    let later = records(&log);
    assert!(later.values().all(|(k, _)| k != b"k\x01"));

    // Clean reopen and crash both keep the compacted log.
    log.close().unwrap();
    assert_eq!(records(&open(&fs, &config(), &clock)), later);
    assert_eq!(records(&open(&fs.crash(), &config(), &clock)), later);
}

#[test]
fn interrupted_swap_completes_on_open() {
    let fs = FaultFs::new();
    let clock = Arc::new(ManualClock::new(NOW));
    let log = open(&fs, &config(), &clock);
    for round in 0..8u16 {
        log.append(
            &mut keyed(&[(0, Some(round)), (1, Some(round))], NOW),
            LEADER,
        )
        .unwrap();
    }
    log.roll().unwrap();
    let before = records(&log);
    log.close().unwrap();
    // Compact a copy, then stage its cleaned first segment as a pending swap in the original.
    let copy = fs.crash();
    let compacted = open(&copy, &config(), &clock);
    compacted.compact(compacted.log_end_offset()).unwrap();
    let cleaned = copy.read_all(&segment_path(&dir(), 0)).unwrap();
    drop(compacted);
    let swap = dir().join(format!("{:020}.log.swap", 0));
    let staged = fs.open(&swap, true).unwrap();
    staged.write_all_at(&cleaned, 0).unwrap();
    staged.sync_data().unwrap();
    let stray = fs
        .open(&dir().join(format!("{:020}.log.cleaned", 16)), true)
        .unwrap();
    stray.write_all_at(b"partial", 0).unwrap();
    fs.sync_dir(&dir()).unwrap();

    let log = open(&fs, &config(), &clock);
    assert!(!fs.exists(&swap));
    let after = records(&log);
    assert!(after.len() < before.len());
    for (offset, record) in &after {
        assert_eq!(before.get(offset), Some(record));
    }
}

/// Appends, rolls and truncations from one thread while another compacts: every pass either
/// applies or is discarded, and the log keeps the latest value of every key.
#[test]
fn compaction_runs_beside_appends_and_truncation() {
    let fs = FaultFs::new();
    let clock = Arc::new(ManualClock::new(NOW));
    let log = Arc::new(open(&fs, &config(), &clock));
    std::thread::scope(|scope| {
        let writer = log.clone();
        scope.spawn(move || {
            for round in 0..300u16 {
                writer
                    .append(&mut keyed(&[((round % 5) as u8, Some(round))], NOW), LEADER)
                    .unwrap();
                if round % 7 == 0 {
                    writer.roll().unwrap();
                }
                if round % 50 == 49 {
                    writer.truncate_to(writer.log_end_offset() - 3).unwrap();
                }
            }
        });
        let cleaner = log.clone();
        scope.spawn(move || {
            for _ in 0..200 {
                cleaner.compact(cleaner.log_end_offset()).unwrap();
            }
        });
    });
    log.roll().unwrap();
    log.compact(log.log_end_offset()).unwrap();
    let after = records(&log);
    let mut keys: Vec<&Vec<u8>> = after.values().map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 5, "one record per key survives");
    assert_eq!(after.len(), 5);
    drop(after);
    let leo = log.log_end_offset();
    drop(log);
    assert_eq!(open(&fs, &config(), &clock).log_end_offset(), leo);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn compaction_matches_latest_per_key(
        batches in prop::collection::vec(prop::collection::vec((0u8..6, prop::option::weighted(0.8, 0u16..100)), 1..5), 1..40),
        rolls in prop::collection::vec(any::<bool>(), 40),
        dedupe in prop::sample::select(vec![60usize, 200, 1 << 20]),
    ) {
        let fs = FaultFs::new();
        let clock = Arc::new(ManualClock::new(NOW));
        let log = open_with_dedupe(&fs, &config(), &clock, dedupe);
        for (i, batch) in batches.iter().enumerate() {
            log.append(&mut keyed(batch, NOW), LEADER).unwrap();
            if rolls[i] {
                log.roll().unwrap();
            }
        }
        let before = records(&log);
        let active_base = *log.segment_base_offsets().last().unwrap();
        // A small key map takes several passes; each leaves its range compacted.
        loop {
            let stats = log.compact(log.log_end_offset()).unwrap();
            check_compacted(&before, &records(&log), stats.cleaned_up_to.max(log.log_start_offset()));
            if stats.cleaned_up_to >= active_base || stats == Default::default() {
                break;
            }
        }
        let after = records(&log);
        check_compacted(&before, &after, active_base);
        // A second pass changes nothing, and the log still takes appends.
        log.compact(log.log_end_offset()).unwrap();
        prop_assert_eq!(records(&log), after);
        let leo = log.log_end_offset();
        prop_assert_eq!(log.append(&mut keyed(&[(0, Some(1))], NOW), LEADER).unwrap().first_offset, leo);
    }
}

/// Kafka's delete horizon (KIP-534): a tombstone survives `delete.retention.ms` from the pass
/// that first kept it, however old its own timestamp, and the horizon survives a restart.
#[test]
fn tombstones_live_delete_retention_from_their_first_cleaning() {
    let fs = FaultFs::new();
    let clock = Arc::new(ManualClock::new(NOW));
    let log = open(&fs, &config(), &clock);
    let old = NOW - 10 * 86_400_000;
    log.append(&mut keyed(&[(1, Some(1)), (2, Some(1))], old), LEADER)
        .unwrap();
    log.append(&mut keyed(&[(1, None)], old), LEADER).unwrap();
    log.roll().unwrap();
    let leo = log.log_end_offset();
    let stats = log.compact(leo).unwrap();
    assert_eq!(stats.delete_horizon, NOW + 1_000);
    let tombstone = all_batches(&log)
        .into_iter()
        .find(|b| b.records().unwrap().any(|r| r.unwrap().value.is_none()))
        .unwrap();
    assert!(tombstone.attributes().has_delete_horizon());
    let r = tombstone.records().unwrap().next().unwrap().unwrap();
    assert_eq!(r.timestamp, old, "record timestamps are kept");
    assert!(!log.delete_horizon_passed());

    // Not yet: one millisecond before the horizon.
    clock.advance(999);
    log.compact(leo).unwrap();
    assert!(records(&log).values().any(|(_, v)| v.is_none()));

    // The horizon outlives a restart, and once it passes a pass removes the tombstone even
    // though nothing is dirty.
    log.close().unwrap();
    let log = open(&fs, &config(), &clock);
    assert_eq!(log.dirty_ratio(), 0.0);
    clock.advance(1);
    assert!(log.delete_horizon_passed());
    let stats = log.compact(leo).unwrap();
    assert_eq!((stats.records_removed, stats.delete_horizon), (1, -1));
    let left = records(&log);
    assert_eq!(left.len(), 1);
    assert!(left.values().all(|(k, v)| k == b"k\x02" && v.is_some()));
    assert!(!log.delete_horizon_passed());
}

/// A key map too small for the dirty part: each pass ends where the map filled, checkpoints
/// it, and the next goes on; the result equals one pass with a roomy map.
#[test]
fn small_key_map_cleans_in_passes() {
    let fill = |log: &Log| {
        for round in 0..12u16 {
            let batch: Vec<(u8, Option<u16>)> = (0..4)
                .map(|k| (((round + k) % 9) as u8, Some(round)))
                .collect();
            log.append(&mut keyed(&batch, NOW), LEADER).unwrap();
        }
        log.roll().unwrap();
    };
    let roomy = open(&FaultFs::new(), &config(), &Arc::new(ManualClock::new(NOW)));
    fill(&roomy);
    roomy.compact(roomy.log_end_offset()).unwrap();

    let fs = FaultFs::new();
    let clock = Arc::new(ManualClock::new(NOW));
    // Room for about four keys.
    let log = open_with_dedupe(&fs, &config(), &clock, 4 * 60);
    fill(&log);
    let before = records(&log);
    let leo = log.log_end_offset();
    let mut ends = Vec::new();
    loop {
        let stats = log.compact(leo).unwrap();
        if stats == Default::default() {
            break;
        }
        ends.push(stats.cleaned_up_to);
        check_compacted(&before, &records(&log), stats.cleaned_up_to);
        if ends.len() == 3 {
            // The checkpoint survives a crash: the next pass continues, not starts over.
            let log2 = open_with_dedupe(&fs.crash(), &config(), &clock, 4 * 60);
            assert!(log2.compact(leo).unwrap().cleaned_up_to > ends[2]);
        }
        assert!(ends.len() < 50, "passes make progress");
    }
    assert!(ends.len() > 2, "the map filled: {ends:?}");
    assert!(ends.windows(2).all(|w| w[0] <= w[1]), "{ends:?}");
    assert_eq!(records(&log), records(&roomy));
}

/// Compaction merges small adjacent segments, never past `segment.bytes`.
#[test]
fn small_cleaned_segments_are_merged() {
    let fs = FaultFs::new();
    let clock = Arc::new(ManualClock::new(NOW));
    let log = open(&fs, &config(), &clock);
    for round in 0..30u16 {
        log.append(&mut keyed(&[((round % 4) as u8, Some(round))], NOW), LEADER)
            .unwrap();
        log.roll().unwrap();
    }
    log.append(&mut keyed(&[(9, Some(0))], NOW), LEADER)
        .unwrap();
    let before = records(&log);
    let leo = log.log_end_offset();
    assert_eq!(log.segment_count(), 31);
    let stats = log.compact(leo).unwrap();
    assert_eq!(stats.segments, 30);
    assert!(stats.segments_after < 30, "{stats:?}");
    // Merged outputs are small; the next pass merges them further.
    log.compact(leo).unwrap();
    assert!(log.segment_count() <= 3, "{:?}", log.segment_base_offsets());
    check_compacted(
        &before,
        &records(&log),
        *log.segment_base_offsets().last().unwrap(),
    );
    assert_eq!(log.log_end_offset(), leo);
    let sizes = segment_sizes(&fs, &log);
    assert!(sizes.iter().all(|&s| s <= 600), "{sizes:?}");
    // Reads, reopen and a crash see the merged log.
    log.close().unwrap();
    let after = records(&open(&fs, &config(), &clock));
    assert_eq!(after, records(&open(&fs.crash(), &config(), &clock)));
    assert_eq!(after.len(), 5);
}

/// A merged swap interrupted after its commit point completes on open: the other members go.
#[test]
fn interrupted_merge_swap_completes_on_open() {
    let fs = FaultFs::new();
    let clock = Arc::new(ManualClock::new(NOW));
    let log = open(&fs, &config(), &clock);
    for round in 0..6u16 {
        log.append(
            &mut keyed(&[(0, Some(round)), (1, Some(round))], NOW),
            LEADER,
        )
        .unwrap();
        log.roll().unwrap();
    }
    let bases = log.segment_base_offsets();
    let before = records(&log);
    log.close().unwrap();
    // Stage: the cleaned first three segments as one swap file; the members stay.
    let copy = fs.crash();
    let compacted = open(&copy, &config(), &clock);
    let mut cleaned = Vec::new();
    for base in &bases[..3] {
        cleaned.extend(copy.read_all(&segment_path(&dir(), *base)).unwrap());
    }
    drop(compacted);
    let swap = dir().join(format!("{:020}-{:020}.log.swap", bases[0], bases[2]));
    let staged = fs.open(&swap, true).unwrap();
    staged.write_all_at(&cleaned, 0).unwrap();
    staged.sync_data().unwrap();
    fs.sync_dir(&dir()).unwrap();

    let log = open(&fs, &config(), &clock);
    assert!(!fs.exists(&swap));
    let mut expected = bases.clone();
    expected.drain(1..3);
    assert_eq!(log.segment_base_offsets(), expected);
    assert_eq!(records(&log), before);
}

fn segment_sizes(fs: &FaultFs, log: &Log) -> Vec<usize> {
    log.segment_base_offsets()
        .into_iter()
        .map(|b| fs.read_all(&segment_path(&dir(), b)).unwrap().len())
        .collect()
}

/// `min.compaction.lag.ms`: a segment holding a record younger than the lag is not cleaned,
/// nor anything after it.
#[test]
fn young_records_wait_for_min_compaction_lag() {
    let fs = FaultFs::new();
    let clock = Arc::new(ManualClock::new(NOW));
    let config = LogConfig {
        min_compaction_lag_ms: 1_000,
        ..config()
    };
    let log = open(&fs, &config, &clock);
    log.append(
        &mut keyed(&[(0, Some(1)), (0, Some(2))], NOW - 5_000),
        LEADER,
    )
    .unwrap();
    log.roll().unwrap();
    log.append(&mut keyed(&[(1, Some(1)), (1, Some(2))], NOW), LEADER)
        .unwrap();
    log.roll().unwrap();
    let leo = log.log_end_offset();
    let stats = log.compact(leo).unwrap();
    assert_eq!(
        (stats.records_removed, stats.cleaned_up_to),
        (1, 2),
        "only the old segment"
    );
    assert_eq!(records(&log).len(), 3);
    clock.advance(1_001);
    assert_eq!(log.compact(leo).unwrap().records_removed, 1);
    assert_eq!(records(&log).len(), 2);
}

/// A compressed batch that loses records is rewritten with its codec, and a kept tombstone
/// inside it gets the delete horizon like any other.
#[test]
fn compressed_batches_keep_their_codec() {
    use weir_records::Compression;
    let fs = FaultFs::new();
    let clock = Arc::new(ManualClock::new(NOW));
    let log = open(&fs, &config(), &clock);
    let mut builder = RecordBatchBuilder::new();
    builder
        .compression(Compression::Gzip)
        .push(Record::new(NOW, Some(b"a"), Some(b"1")))
        .push(Record::new(NOW, Some(b"a"), Some(b"2")))
        .push(Record::new(NOW, Some(b"b"), None));
    log.append(&mut builder.build().unwrap().to_vec(), LEADER)
        .unwrap();
    log.roll().unwrap();
    let stats = log.compact(log.log_end_offset()).unwrap();
    assert_eq!(stats.records_removed, 1);
    let batches = all_batches(&log);
    assert_eq!(batches.len(), 1);
    let attributes = batches[0].attributes();
    assert_eq!(attributes.compression().unwrap(), Compression::Gzip);
    assert!(attributes.has_delete_horizon());
    let kept: Vec<(i64, Option<Vec<u8>>)> = batches[0]
        .records()
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.offset, r.value.map(|v| v.to_vec()))
        })
        .collect();
    assert_eq!(kept, vec![(1, Some(b"2".to_vec())), (2, None)]);
}
