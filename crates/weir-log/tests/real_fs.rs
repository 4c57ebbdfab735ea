//! The same operations on the real file system (`StdFs`): roll, truncate, retention,
//! DeleteRecords, compaction with its swap, clean and unclean reopen, and the log manager.

#![expect(clippy::unwrap_used, reason = "helpers fail the test on error")]

mod common;

use common::*;
use std::path::Path;
use weir_log::{CleanupPolicy, Log, LogConfig, LogManager, LogManagerOptions, TopicPartition};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2_000,
        index_interval_bytes: 100,
        cleanup_policy: CleanupPolicy {
            delete: true,
            compact: true,
        },
        retention_ms: -1,
        ..LogConfig::default()
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn lifecycle_on_the_real_file_system() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("events-0");
    let log = Log::open(&dir, config()).unwrap();
    for tag in 0..60 {
        log.append(&mut batch(tag, 3, NOW), LEADER).unwrap();
    }
    assert!(log.segment_count() > 3);
    let before = bytes_of(&all_batches(&log));

    // Unclean reopen: everything was written (the page cache survives a process exit).
    drop(log);
    let log = Log::open(&dir, config()).unwrap();
    assert_eq!(bytes_of(&all_batches(&log)), before);

    log.truncate_to(170).unwrap();
    assert_eq!(log.log_end_offset(), 168);
    assert_eq!(log.delete_records_before(20).unwrap(), 20);
    let stats = log.compact(log.log_end_offset()).unwrap();
    assert!(stats.segments > 0 && stats.records_removed > 0);
    let compacted = bytes_of(&all_batches(&log));
    log.close().unwrap();
    assert!(names(&dir).contains(&".clean-shutdown".to_owned()));
    assert!(
        !names(&dir)
            .iter()
            .any(|n| n.ends_with(".cleaned") || n.ends_with(".swap") || n.ends_with(".tmp"))
    );

    let log = Log::open(&dir, config()).unwrap();
    assert_eq!(log.log_start_offset(), 20);
    assert_eq!(bytes_of(&all_batches(&log)), compacted);
    log.truncate_fully_and_start_at(1_000).unwrap();
    assert_eq!(
        names(&dir).iter().filter(|n| n.ends_with(".log")).count(),
        1
    );
    log.close().unwrap();
}

#[test]
fn manager_on_the_real_file_system() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = vec![tmp.path().join("a"), tmp.path().join("b")];
    let mut options = LogManagerOptions::new(dirs.clone(), LogConfig::default());
    options.open_threads = 2;
    let manager = LogManager::open(options.clone()).unwrap();
    for p in 0..20 {
        let log = manager
            .get_or_create(&TopicPartition::new("orders", p), None)
            .unwrap();
        log.append(&mut batch(p as u64, 2, NOW), LEADER).unwrap();
    }
    assert!(manager.tick().is_empty());
    manager.close().unwrap();
    assert_eq!(names(&dirs[0]).len() + names(&dirs[1]).len(), 20);
    let manager = LogManager::open(options).unwrap();
    assert_eq!(manager.len(), 20);
    assert!(
        manager
            .logs()
            .iter()
            .all(|(_, log)| log.log_end_offset() == 2)
    );
    manager.delete(&TopicPartition::new("orders", 0)).unwrap();
    assert_eq!(manager.len(), 19);
}

/// Files of `dir` this process holds open, from `/proc/self/fd`.
fn open_files_under(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// With room for two inactive segment files across the manager, 30 partitions of many
/// segments each are appended to and read back correctly, and the process never holds more
/// than one file per partition (its active segment) plus the two.
#[test]
fn bounded_handles_with_many_partitions_and_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let mut options = LogManagerOptions::new(
        vec![root.join("a"), root.join("b")],
        LogConfig {
            segment_bytes: 300,
            ..LogConfig::default()
        },
    );
    options.open_threads = 2;
    options.max_inactive_handles = 2;
    let partitions = 30;
    let bound = partitions + 2;
    let manager = LogManager::open(options.clone()).unwrap();
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new("many", p as i32))
        .collect();
    let mut written: Vec<Vec<Vec<u8>>> = vec![Vec::new(); partitions];
    for round in 0..12u64 {
        for (p, tp) in tps.iter().enumerate() {
            let log = manager.get_or_create(tp, None).unwrap();
            let mut bytes = batch(round * 100 + p as u64, 3, NOW);
            log.append(&mut bytes, LEADER).unwrap();
            written[p].push(bytes);
        }
        // Reads of old segments of every partition go through the shared cache.
        for tp in &tps {
            let log = manager.get(tp).unwrap();
            log.read(0, 1, log.log_end_offset()).unwrap();
        }
        assert!(manager.handles().open_count() <= 2);
        assert!(
            open_files_under(&root) <= bound,
            "{}",
            open_files_under(&root)
        );
    }
    let check = |manager: &LogManager| {
        for (p, tp) in tps.iter().enumerate() {
            let log = manager.get(tp).unwrap();
            assert!(log.segment_count() > 3, "{}", log.segment_count());
            let stored: Vec<Vec<u8>> = all_batches(&log)
                .iter()
                .map(|b| b.as_bytes().to_vec())
                .collect();
            assert_eq!(stored, written[p], "partition {p}");
            assert!(open_files_under(&root) <= bound);
        }
    };
    check(&manager);
    drop(manager); // unclean: recovery reads through the same bound
    let manager = LogManager::open(options).unwrap();
    check(&manager);
    assert!(manager.handles().open_count() <= 2);
}

/// A data directory that cannot be used (here a regular file where the directory should be)
/// is reported offline while the healthy one opens and serves.
#[test]
fn unusable_data_directory_is_offline_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    let bad = tmp.path().join("bad");
    std::fs::write(&bad, b"not a directory").unwrap();
    let options = LogManagerOptions::new(vec![good.clone(), bad.clone()], LogConfig::default());
    let manager = LogManager::open(options.clone()).unwrap();
    let offline = manager.offline_dirs();
    assert_eq!(offline.len(), 1);
    assert_eq!(offline[0].path, bad);
    assert!(matches!(*offline[0].error, weir_log::Error::Io { .. }));
    let log = manager
        .get_or_create(&TopicPartition::new("t", 0), None)
        .unwrap();
    assert!(log.dir().starts_with(&good));
    log.append(&mut batch(1, 1, NOW), LEADER).unwrap();
    drop(log);
    manager.close().unwrap();

    let only_bad = LogManagerOptions::new(vec![bad], LogConfig::default());
    assert!(LogManager::open(only_bad).is_err());
}
