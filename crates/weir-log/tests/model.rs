//! Model test: random appends (tombstones included), reads, rolls, truncations, retention,
//! DeleteRecords, flushes, compaction passes (some with a key map too small for one pass), clean
//! reopens and crashes against an in-memory model of the batches the log must hold. Leader
//! epochs rise now and then; the leader epoch cache must give every visible batch its epoch.

#![expect(clippy::unwrap_used, reason = "the model fails the test on error")]

mod common;

use bytes::Bytes;
use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use weir_log::CleanupPolicy;
use weir_log::fault::FaultFs;
use weir_log::{Clock, LeaderEpochCache, Log, LogConfig, ManualClock};
use weir_records::{RecordBatch, RecordBatches};

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        age_ms: i64,
        tag: u64,
    },
    /// Tombstones (null values) for the keys of `tag`'s batches; compaction stamps them with a
    /// delete horizon (`delete.retention.ms` is a day, so none expires here).
    Tombstones {
        records: usize,
        tag: u64,
    },
    /// A follower's append: offsets chosen by the leader, possibly after a gap.
    Replicate {
        records: usize,
        gap: i64,
        tag: u64,
    },
    Read {
        from: u64,
        max_bytes: usize,
    },
    Roll,
    Truncate {
        to: u64,
    },
    DeleteRecordsBefore {
        to: u64,
    },
    Retention {
        advance_ms: i64,
    },
    Flush,
    Reopen,
    Crash,
    /// A compaction pass up to the log end offset (compacted configs only).
    Compact,
    /// ListOffsets by timestamp, `back_ms` before the clock.
    Timestamp {
        back_ms: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..6, 0i64..3_000, any::<u64>()).prop_map(|(records, age_ms, tag)| Op::Append { records, age_ms, tag }),
        2 => (1usize..4, 0i64..3, any::<u64>()).prop_map(|(records, gap, tag)| Op::Replicate { records, gap, tag }),
        1 => (1usize..3, any::<u64>()).prop_map(|(records, tag)| Op::Tombstones { records, tag }),
        3 => (any::<u64>(), 1usize..2_000).prop_map(|(from, max_bytes)| Op::Read { from, max_bytes }),
        1 => Just(Op::Roll),
        1 => any::<u64>().prop_map(|to| Op::Truncate { to }),
        1 => any::<u64>().prop_map(|to| Op::DeleteRecordsBefore { to }),
        1 => (0i64..4_000).prop_map(|advance_ms| Op::Retention { advance_ms }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => Just(Op::Compact),
        2 => (-10i64..3_100).prop_map(|back_ms| Op::Timestamp { back_ms }),
    ]
}

/// Key map sizes for compaction: one that holds a key or two (so passes stop part way and the
/// next continues from the cleaner checkpoint) and a roomy one.
fn dedupe_buffer() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![100usize, 1 << 20])
}

fn config() -> impl Strategy<Value = LogConfig> {
    (
        prop::sample::select(vec![300u32, 1_000, 4_096]),
        prop::sample::select(vec![1u32, 100, 4_096]),
        prop::sample::select(vec![48u32, 10 << 20]),
        prop::sample::select(vec![-1i64, 5_000]),
        prop::sample::select(vec![-1i64, 2_000]),
        any::<bool>(),
    )
        .prop_map(
            |(
                segment_bytes,
                index_interval_bytes,
                segment_index_bytes,
                retention_ms,
                retention_bytes,
                compact,
            )| LogConfig {
                segment_bytes,
                index_interval_bytes,
                segment_index_bytes,
                retention_ms,
                retention_bytes,
                cleanup_policy: CleanupPolicy {
                    delete: true,
                    compact,
                },
                ..LogConfig::default()
            },
        )
}

#[derive(Debug, Clone)]
struct Batch {
    base: i64,
    last: i64,
    timestamp: i64,
    /// Offsets of the records still in the batch (compaction removes some).
    offsets: Vec<i64>,
    bytes: Vec<u8>,
}

impl Batch {
    fn from_stored(batch: &RecordBatch) -> Self {
        Self {
            base: batch.base_offset(),
            last: batch.last_offset(),
            timestamp: batch.max_timestamp(),
            offsets: batch
                .records()
                .unwrap()
                .map(|r| r.unwrap().offset)
                .collect(),
            bytes: batch.as_bytes().to_vec(),
        }
    }
}

type Records = BTreeMap<i64, (Option<Bytes>, Option<Bytes>)>;

/// Every record of the batches at or past the log start offset.
fn records_of(batches: &[Batch], lso: i64) -> Records {
    let mut out = Records::new();
    for b in batches.iter().filter(|b| b.last >= lso) {
        let batch = RecordBatch::new(Bytes::from(b.bytes.clone())).unwrap();
        for r in batch.records().unwrap() {
            let r = r.unwrap();
            if r.offset >= lso {
                out.insert(r.offset, (r.key, r.value));
            }
        }
    }
    out
}

#[derive(Debug, Default)]
struct Model {
    batches: Vec<Batch>,
    lso: i64,
    leo: i64,
    flushed: i64,
    /// The epoch of the next append; rises now and then, never falls.
    epoch: i32,
}

impl Model {
    fn visible(&self) -> Vec<Vec<u8>> {
        self.batches
            .iter()
            .filter(|b| b.last >= self.lso)
            .map(|b| b.bytes.clone())
            .collect()
    }
}

fn pick(x: u64, lo: i64, hi: i64) -> i64 {
    lo + (x % ((hi - lo + 1) as u64)) as i64
}

fn stored(log: &Log) -> Vec<Vec<u8>> {
    all_batches(log)
        .iter()
        .map(|b| b.as_bytes().to_vec())
        .collect()
}

fn check(log: &Log, model: &Model) {
    assert_eq!(log.log_end_offset(), model.leo);
    assert_eq!(log.log_start_offset(), model.lso);
    assert_eq!(stored(log), model.visible());
    // The leader epoch cache lies within the log and knows the epoch of every visible batch.
    let entries = log.epoch_entries();
    for e in &entries {
        assert!(
            (model.lso..=model.leo).contains(&e.start_offset),
            "{entries:?} outside [{}, {}]",
            model.lso,
            model.leo
        );
    }
    let cache = LeaderEpochCache::from_entries(entries.iter().copied());
    for b in all_batches(log) {
        let offset = b.base_offset().max(model.lso);
        assert_eq!(
            cache.epoch_for_offset(offset),
            Some(b.header().partition_leader_epoch),
            "batch at {offset}, {entries:?}"
        );
    }
}

fn run(config: LogConfig, dedupe: usize, ops: Vec<Op>) {
    let clock = Arc::new(ManualClock::new(NOW));
    let mut fs = FaultFs::new();
    let open = |fs: &FaultFs, config: &LogConfig, clock: &Arc<ManualClock>| {
        open_with_dedupe(fs, config, clock, dedupe)
    };
    let mut log = open(&fs, &config, &clock);
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append {
                records,
                age_ms,
                tag,
            } => {
                let timestamp = clock.now_ms() - age_ms;
                let mut bytes = batch(tag, records, timestamp);
                model.epoch += i32::from(tag % 4 == 0);
                let leader = weir_log::AppendOrigin::Leader {
                    leader_epoch: model.epoch,
                };
                let info = log.append(&mut bytes, leader).unwrap();
                assert_eq!(info.first_offset, model.leo);
                assert_eq!(info.last_offset, model.leo + records as i64 - 1);
                model.batches.push(Batch {
                    base: info.first_offset,
                    last: info.last_offset,
                    timestamp,
                    offsets: (info.first_offset..=info.last_offset).collect(),
                    bytes,
                });
                model.leo = info.last_offset + 1;
            }
            Op::Tombstones { records, tag } => {
                let timestamp = clock.now_ms();
                let mut builder = weir_records::RecordBatchBuilder::new();
                for _ in 0..records {
                    builder.push(weir_records::Record::new(
                        timestamp,
                        Some(format!("k{}", tag % 7).as_bytes()),
                        None,
                    ));
                }
                let mut bytes = builder.build().unwrap().to_vec();
                let leader = weir_log::AppendOrigin::Leader {
                    leader_epoch: model.epoch,
                };
                let info = log.append(&mut bytes, leader).unwrap();
                assert_eq!(info.first_offset, model.leo);
                model.batches.push(Batch {
                    base: info.first_offset,
                    last: info.last_offset,
                    timestamp,
                    offsets: (info.first_offset..=info.last_offset).collect(),
                    bytes,
                });
                model.leo = info.last_offset + 1;
            }
            Op::Replicate { records, gap, tag } => {
                let timestamp = clock.now_ms();
                let mut bytes = batch(tag, records, timestamp);
                let base = model.leo + gap;
                weir_records::batch::set_base_offset(&mut bytes, base).unwrap();
                model.epoch += i32::from(tag % 3 == 0);
                weir_records::batch::set_partition_leader_epoch(&mut bytes, model.epoch).unwrap();
                let info = log
                    .append(&mut bytes, weir_log::AppendOrigin::Replication)
                    .unwrap();
                assert_eq!(
                    (info.first_offset, info.last_offset),
                    (base, base + records as i64 - 1)
                );
                model.batches.push(Batch {
                    base,
                    last: info.last_offset,
                    timestamp,
                    offsets: (base..=info.last_offset).collect(),
                    bytes,
                });
                model.leo = info.last_offset + 1;
            }
            Op::Read { from, max_bytes } => {
                let from = pick(from, model.lso, model.leo);
                let slice = log.read(from, max_bytes, model.leo).unwrap();
                let got: Vec<Vec<u8>> = RecordBatches::new(slice.to_bytes().unwrap())
                    .map(|b| b.unwrap().as_bytes().to_vec())
                    .collect();
                let start = model.batches.iter().position(|b| b.last >= from);
                match start {
                    None => assert!(got.is_empty()),
                    Some(i) => {
                        assert!(!got.is_empty(), "read from {from} returned nothing");
                        assert_eq!(slice.first_offset(), model.batches[i].base);
                        // Past the last batch returned, and no further than the next one (a gap
                        // left by a replicated append may be skipped).
                        let next = slice.next_offset();
                        let after = model
                            .batches
                            .get(i + got.len())
                            .map_or(model.leo, |b| b.base);
                        assert!(next > model.batches[i + got.len() - 1].last && next <= after);
                        let want: Vec<Vec<u8>> = model.batches[i..i + got.len()]
                            .iter()
                            .map(|b| b.bytes.clone())
                            .collect();
                        assert_eq!(got, want);
                        let total: usize = got.iter().map(Vec::len).sum();
                        assert!(got.len() == 1 || total <= max_bytes);
                    }
                }
            }
            Op::Roll => log.roll().unwrap(),
            Op::Truncate { to } => {
                // With compaction, records below the log start offset change unseen: never
                // expose them again by truncating below it.
                let floor = if config.cleanup_policy.compact {
                    model.lso
                } else {
                    0
                };
                let to = pick(to, floor, model.leo + 1);
                let bases = log.segment_base_offsets();
                log.truncate_to(to).unwrap();
                if to >= model.leo {
                    // nothing to do
                } else if to <= bases[0] {
                    model.batches.clear();
                    model.lso = to;
                    model.leo = to;
                    model.flushed = to;
                } else {
                    model.batches.retain(|b| b.last < to);
                    let floor = bases.iter().copied().filter(|&b| b <= to).max().unwrap();
                    let expected = model
                        .batches
                        .last()
                        .map_or(floor, |b| (b.last + 1).max(floor));
                    if config.cleanup_policy.compact {
                        // Compaction may have removed batches the model no longer sees (below the
                        // log start offset) or left an emptied segment ending past them: the log
                        // end offset then lies between what is visible and the target.
                        let visible_end = model
                            .batches
                            .iter()
                            .filter(|b| b.last >= model.lso)
                            .map(|b| b.last + 1)
                            .max()
                            .unwrap_or(floor);
                        let leo = log.log_end_offset();
                        assert!(leo <= to.max(expected) && leo >= visible_end.min(expected));
                        model.leo = leo;
                        model.batches.retain(|b| b.last < leo);
                    } else {
                        model.leo = expected;
                    }
                    model.lso = model.lso.min(model.leo);
                    model.flushed = model.leo; // truncation flushes what is left
                }
            }
            Op::DeleteRecordsBefore { to } => {
                let to = pick(to, model.lso, model.leo);
                assert_eq!(log.delete_records_before(to).unwrap(), to);
                model.lso = to;
            }
            Op::Retention { advance_ms } => {
                clock.advance(advance_ms);
                log.apply_retention(model.leo).unwrap();
                let lso = log.log_start_offset();
                assert!(lso >= model.lso && lso <= model.leo);
                // Retention moves the start to a segment boundary (after a crash, segments may be
                // empty, so that is not always a batch boundary).
                assert!(lso == model.lso || log.segment_base_offsets().first() == Some(&lso));
                model.lso = lso;
            }
            Op::Flush => {
                log.flush().unwrap();
                model.flushed = model.leo;
            }
            Op::Reopen => {
                log.close().unwrap();
                log = open(&fs, &config, &clock);
                model.flushed = model.leo;
            }
            Op::Timestamp { back_ms } => {
                let target = clock.now_ms() - back_ms;
                let found = log.fetch_offset_by_timestamp(target).unwrap();
                // Every record of a model batch has the batch's timestamp.
                let expected = model
                    .batches
                    .iter()
                    .filter(|b| b.timestamp >= target)
                    .find_map(|b| {
                        b.offsets
                            .iter()
                            .find(|&&o| o >= model.lso)
                            .map(|&o| (o, b.timestamp))
                    });
                assert_eq!(
                    found.map(|f| (f.offset, f.timestamp)),
                    expected,
                    "timestamp {target}"
                );
            }
            Op::Compact => {
                let before = records_of(&model.batches, model.lso);
                let stats = log.compact(model.leo).unwrap();
                if !config.cleanup_policy.compact {
                    assert_eq!(stats.segments, 0);
                } else if stats.segments > 0 {
                    let stored: Vec<Batch> =
                        all_batches(&log).iter().map(Batch::from_stored).collect();
                    let after = records_of(&stored, model.lso);
                    // Surviving records are unchanged; nothing past the cleaned range moved.
                    for (offset, record) in &after {
                        assert_eq!(before.get(offset), Some(record), "offset {offset} changed");
                    }
                    for (offset, record) in before.range(stats.cleaned_up_to..) {
                        assert_eq!(after.get(offset), Some(record));
                    }
                    // Below it, exactly the latest record of each key is left (tombstones too: none
                    // reaches its delete horizon here):
                    // the part below the previous pass's end was already unique, so a pass whose
                    // map holds only the dirty part still leaves one record per key.
                    let mut latest = BTreeMap::new();
                    for (offset, (key, _)) in before.range(..stats.cleaned_up_to) {
                        latest.insert(key.clone(), *offset);
                    }
                    let kept: Vec<i64> = after
                        .range(..stats.cleaned_up_to)
                        .map(|(o, _)| *o)
                        .collect();
                    let mut want: Vec<i64> = latest.into_values().collect();
                    want.sort_unstable();
                    assert_eq!(kept, want);
                    // The model takes the log's batches; invisible ones stay as they were.
                    let mut batches: Vec<Batch> = model
                        .batches
                        .iter()
                        .filter(|b| b.last < model.lso)
                        .cloned()
                        .collect();
                    batches.extend(stored.into_iter().filter(|b| b.last >= model.lso));
                    model.batches = batches;
                    // A pass fsyncs what it rewrites: every segment below its end, including
                    // the one it ended in when the key map filled part way.
                    let rewritten_end = log
                        .segment_base_offsets()
                        .into_iter()
                        .find(|&b| b >= stats.cleaned_up_to)
                        .unwrap_or(stats.cleaned_up_to);
                    model.flushed = model.flushed.max(rewritten_end);
                }
            }
            Op::Crash => {
                drop(log);
                fs = fs.crash();
                log = open(&fs, &config, &clock);
                model.batches.retain(|b| b.last < model.flushed);
                model.leo = log.log_end_offset();
                assert!(model.leo >= model.flushed);
                model.lso = model.lso.min(model.leo);
                model.flushed = model.leo;
            }
        }
        check(&log, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(config in config(), dedupe in dedupe_buffer(), ops in prop::collection::vec(op(), 1..60)) {
        run(config, dedupe, ops);
    }
}
