//! Crash consistency through the fault-injecting file system: torn tails, flipped bytes, lost
//! un-fsynced suffixes and torn writes.

mod common;

use common::*;
use std::sync::Arc;
use weir_log::fault::FaultFs;
use weir_log::{Error, LogConfig, ManualClock};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// A torn tail at every byte offset of the last batch recovers every batch before the tear and
/// nothing after.
#[test]
fn torn_tail_at_every_byte_of_the_last_batch() {
    let fs = FaultFs::new();
    let clock = Arc::new(ManualClock::new(NOW));
    let log = open(&fs, &config(), &clock);
    for tag in 0..12 {
        log.append(&mut batch(tag, 3, NOW), LEADER).unwrap();
    }
    log.flush().unwrap();
    let durable = bytes_of(&all_batches(&log));
    let durable_leo = log.log_end_offset();
    let last = batch(99, 4, NOW);
    let last_info = log.append(&mut last.clone(), LEADER).unwrap();
    let active = *log.segment_base_offsets().last().unwrap();
    let active_path = segment_path(&dir(), active);
    for kept in 0..=last.len() {
        let crashed = fs.crash_with(|path, synced, _| {
            if path == active_path {
                synced + kept
            } else {
                synced
            }
        });
        let log = open(&crashed, &config(), &clock);
        let batches = bytes_of(&all_batches(&log));
        if kept == last.len() {
            assert_eq!(log.log_end_offset(), last_info.last_offset + 1);
            assert_eq!(&batches[..durable.len()], &durable[..]);
            assert_eq!(batches.len(), durable.len() + 1);
        } else {
            assert_eq!(
                log.log_end_offset(),
                durable_leo,
                "kept {kept} bytes of the last batch"
            );
            assert_eq!(batches, durable);
            // The recovered log takes appends where it ends.
            assert_eq!(
                log.append(&mut batch(1, 1, NOW), LEADER)
                    .unwrap()
                    .first_offset,
                durable_leo
            );
        }
    }
}

/// A flipped byte anywhere in the CRC-covered part (or the magic) of a batch is caught: recovery
/// truncates at that batch, keeping all before it.
#[test]
fn flipped_byte_inside_a_batch_is_caught_by_crc() {
    let fs = FaultFs::new();
    let clock = Arc::new(ManualClock::new(NOW));
    let log = open(&fs, &config(), &clock);
    for tag in 0..4 {
        log.append(&mut batch(tag, 2, NOW), LEADER).unwrap();
    }
    let batches = all_batches(&log);
    drop(log); // unclean: the next open scans
    let victim = &batches[2];
    let start: usize = batches[..2].iter().map(|b| b.size()).sum();
    let path = segment_path(&dir(), 0);
    let original = fs.read_all(&path).unwrap();
    for at in (16..victim.size()).map(|i| start + i) {
        let copy = fs.crash();
        let mut bytes = original.clone();
        bytes[at] ^= 0x20;
        copy.write_all(&path, &bytes);
        let log = open(&copy, &config(), &clock);
        assert_eq!(
            log.log_end_offset(),
            victim.base_offset(),
            "flipped byte {at}"
        );
        assert_eq!(bytes_of(&all_batches(&log)), bytes_of(&batches[..2]));
    }
}

/// Whatever suffix of un-fsynced bytes survives, recovery yields a prefix of what was appended
/// that contains everything fsynced, and the log keeps working.
#[test]
fn lost_unsynced_suffix_recovers_consistently() {
    let clock = Arc::new(ManualClock::new(NOW));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    for round in 0..40 {
        let fs = FaultFs::new();
        let log = open(&fs, &config(), &clock);
        let mut flushed = 0;
        for tag in 0..(5 + rand(30)) {
            log.append(&mut batch(tag + round, 1 + rand(4) as usize, NOW), LEADER)
                .unwrap();
            if rand(4) == 0 {
                log.flush().unwrap();
                flushed = log.log_end_offset();
            }
        }
        let written = bytes_of(&all_batches(&log));
        let crashed =
            fs.crash_with(|_, synced, len| synced + rand((len - synced) as u64 + 1) as usize);
        let log = open(&crashed, &config(), &clock);
        let recovered = bytes_of(&all_batches(&log));
        assert!(
            log.log_end_offset() >= flushed,
            "round {round}: lost fsynced data"
        );
        assert!(recovered.len() <= written.len());
        assert_eq!(
            recovered[..],
            written[..recovered.len()],
            "round {round}: not a prefix"
        );
        let next = log.append(&mut batch(0, 1, NOW), LEADER).unwrap();
        assert_eq!(next.first_offset, log.log_end_offset() - 1);
        // A second crash right after recovery loses nothing recovery kept.
        let again = open(&crashed.crash(), &config(), &clock);
        assert!(again.log_end_offset() >= next.first_offset);
    }
}

/// A torn write fails the append, takes the log offline, and recovery drops the partial batch.
#[test]
fn torn_write_fails_append_and_recovers() {
    let fs = FaultFs::new();
    let clock = Arc::new(ManualClock::new(NOW));
    let mut cfg = config();
    cfg.flush_messages = 1;
    let log = open(&fs, &cfg, &clock);
    for tag in 0..3 {
        log.append(&mut batch(tag, 2, NOW), LEADER).unwrap();
    }
    let before = bytes_of(&all_batches(&log));
    fs.set_write_budget(Some(20));
    assert!(matches!(
        log.append(&mut batch(9, 2, NOW), LEADER),
        Err(Error::Io { .. })
    ));
    assert!(matches!(
        log.append(&mut batch(9, 2, NOW), LEADER),
        Err(Error::Offline { .. })
    ));
    let crashed = fs.crash_with(|_, _, len| len);
    let log = open(&crashed, &cfg, &clock);
    assert_eq!(bytes_of(&all_batches(&log)), before);
}

/// A corrupt index file is rebuilt, never trusted, even after a clean shutdown.
#[test]
fn corrupt_index_is_rebuilt() {
    let fs = FaultFs::new();
    let clock = Arc::new(ManualClock::new(NOW));
    let cfg = LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 64,
        ..LogConfig::default()
    };
    let log = open(&fs, &cfg, &clock);
    for tag in 0..60 {
        log.append(&mut batch(tag, 2, NOW + tag as i64), LEADER)
            .unwrap();
    }
    let before = bytes_of(&all_batches(&log));
    log.close().unwrap();
    let index = dir().join(format!("{:020}.index", 0));
    let mut bytes = fs.read_all(&index).unwrap();
    assert!(bytes.len() >= 16);
    bytes[5] ^= 0x7f; // a position now out of order or past the end
    fs.write_all(&index, &bytes);
    let time_index = dir().join(format!("{:020}.timeindex", 0));
    let mut bytes = fs.read_all(&time_index).unwrap();
    bytes.truncate(bytes.len() - 1);
    fs.write_all(&time_index, &bytes);
    let log = open(&fs, &cfg, &clock);
    assert_eq!(bytes_of(&all_batches(&log)), before);
    for offset in (0..120).step_by(7) {
        let slice = log.read(offset, 1, 120).unwrap();
        assert!(slice.first_offset() <= offset && offset <= slice.first_offset() + 1);
    }
    assert_eq!(
        log.fetch_offset_by_timestamp(NOW + 30)
            .unwrap()
            .unwrap()
            .offset,
        60
    );
}

mod arbitrary_damage {
    use super::*;
    use proptest::prelude::*;
    use weir_log::FileSystem;

    #[derive(Debug, Clone)]
    enum Damage {
        Flip { at: usize, mask: u8 },
        Cut { at: usize },
        Garbage { bytes: Vec<u8> },
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Damage::Flip { at, mask }),
            any::<usize>().prop_map(|at| Damage::Cut { at }),
            prop::collection::vec(any::<u8>(), 1..200).prop_map(|bytes| Damage::Garbage { bytes }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        /// Any damage to any segment, with no checkpoint to trust: open never fails or panics
        /// and recovers only original batches, in order; damage to the last segment keeps
        /// exactly those before it (the CRC does not cover the base offset and leader epoch, so
        /// those may differ).
        #[test]
        fn recovery_survives_arbitrary_damage(
            batches in prop::collection::vec((1usize..5, any::<u64>()), 1..30),
            segment_pick in any::<usize>(),
            damages in prop::collection::vec(damage(), 1..4),
        ) {
            let fs = FaultFs::new();
            let clock = Arc::new(ManualClock::new(NOW));
            let log = open(&fs, &config(), &clock);
            for (records, tag) in &batches {
                log.append(&mut batch(*tag, *records, NOW), LEADER).unwrap();
            }
            let original = bytes_of(&all_batches(&log));
            let bases = log.segment_base_offsets();
            drop(log);
            let base = bases[segment_pick % bases.len()];
            let path = segment_path(&dir(), base);
            let mut bytes = fs.read_all(&path).unwrap();
            for d in &damages {
                match d {
                    Damage::Flip { at, mask } if !bytes.is_empty() => {
                        let at = at % bytes.len();
                        bytes[at] ^= mask;
                    }
                    Damage::Cut { at } => bytes.truncate(at % (bytes.len() + 1)),
                    Damage::Garbage { bytes: extra } => bytes.extend_from_slice(extra),
                    Damage::Flip { .. } => {}
                }
            }
            fs.write_all(&path, &bytes);
            fs.remove_file(&dir().join("log-offsets.checkpoint")).unwrap();

            let log = open(&fs, &config(), &clock);
            let recovered = bytes_of(&all_batches(&log));
            prop_assert!(recovered.len() <= original.len());
            if base == *bases.last().unwrap() {
                for (got, want) in recovered.iter().zip(&original) {
                    prop_assert_eq!(&got[16..], &want[16..]);
                }
            } else {
                // A cut exactly at a batch boundary of an earlier segment looks like a segment
                // that legitimately ends early (lost unflushed tail, compaction, replication
                // gap), so later segments stay: what survives is still original batches in order.
                let mut rest = original.iter();
                for got in &recovered {
                    prop_assert!(rest.any(|want| got[16..] == want[16..]), "unknown batch recovered");
                }
            }
            // The log still takes appends and reads them back.
            let leo = log.log_end_offset();
            let info = log.append(&mut batch(1, 1, NOW), LEADER).unwrap();
            prop_assert_eq!(info.first_offset, leo);
            prop_assert!(!log.read(leo, 1, leo + 1).unwrap().is_empty());
        }
    }
}
