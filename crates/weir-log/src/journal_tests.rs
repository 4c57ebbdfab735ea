use super::*;
use crate::{AppendOrigin, LogConfig, LogOptions, StdFs};
use weir_records::{Record, RecordBatchBuilder};

/// A data directory with a journaled file system over it; the journal lives beside it.
struct Harness {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    journal: PathBuf,
    fs: SyncJournalFs,
}

impl Harness {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let journal = tmp.path().join("fsync-journal");
        let fs = SyncJournalFs::new(Arc::new(StdFs), &journal).unwrap();
        Self {
            _tmp: tmp,
            dir,
            journal,
            fs,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Arc<dyn File> {
        let file = self.fs.open(&self.path(name), true).unwrap();
        let len = file.len().unwrap();
        file.write_all_at(bytes, len).unwrap();
        file
    }

    fn power_loss(&self) -> PowerLossReport {
        power_loss(&self.dir, &self.journal).unwrap()
    }

    fn read(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(name)).ok()
    }
}

#[test]
fn a_file_whose_entry_was_never_synced_is_removed() {
    let h = Harness::new();
    let file = h.write("a", b"hello");
    file.sync_data().unwrap();
    let report = h.power_loss();
    assert_eq!(h.read("a"), None);
    assert_eq!(report.files_removed, 1);
    assert_eq!(report.bytes_removed, 5);
}

#[test]
fn a_file_is_cut_to_its_last_fsynced_length() {
    let h = Harness::new();
    let synced = h.write("synced", b"0123456789");
    synced.sync_data().unwrap();
    synced.write_all_at(b"abcdef", 10).unwrap();
    h.write("never", b"lost");
    h.fs.sync_dir(&h.dir).unwrap();
    let report = h.power_loss();
    assert_eq!(h.read("synced").unwrap(), b"0123456789");
    // Created and synced into its directory, but its bytes never fsynced: empty.
    assert_eq!(h.read("never").unwrap(), b"");
    assert_eq!(report.files_truncated, 2);
    assert_eq!(report.bytes_truncated, 6 + 4);
    assert_eq!(report.files_removed, 0);
}

#[test]
fn a_truncation_is_not_durable_until_the_next_fsync() {
    let h = Harness::new();
    let file = h.write("a", b"0123456789");
    file.sync_data().unwrap();
    h.fs.sync_dir(&h.dir).unwrap();
    file.set_len(4).unwrap();
    file.write_all_at(b"xyz", 4).unwrap();
    h.power_loss();
    // The bytes rewritten after the truncation were never fsynced.
    assert_eq!(h.read("a").unwrap(), b"0123");
}

#[test]
fn a_rename_without_a_directory_fsync_is_undone() {
    let h = Harness::new();
    h.write("a", b"data").sync_data().unwrap();
    h.fs.sync_dir(&h.dir).unwrap();
    h.fs.rename(&h.path("a"), &h.path("b")).unwrap();
    let report = h.power_loss();
    assert_eq!(h.read("a").unwrap(), b"data");
    assert_eq!(h.read("b"), None);
    assert_eq!(report.renames_undone, 1);
}

#[test]
fn a_rename_followed_by_a_directory_fsync_is_durable() {
    let h = Harness::new();
    h.write("a", b"data").sync_data().unwrap();
    h.fs.sync_dir(&h.dir).unwrap();
    h.fs.rename(&h.path("a"), &h.path("b")).unwrap();
    h.fs.sync_dir(&h.dir).unwrap();
    let report = h.power_loss();
    assert_eq!(h.read("a"), None);
    assert_eq!(h.read("b").unwrap(), b"data");
    assert!(!report.cut_anything(), "{report}");
}

#[test]
fn a_temporary_file_renamed_without_a_directory_fsync_is_lost() {
    let h = Harness::new();
    h.write("new.tmp", b"data").sync_data().unwrap();
    h.fs.rename(&h.path("new.tmp"), &h.path("new")).unwrap();
    let report = h.power_loss();
    assert_eq!(h.read("new.tmp"), None);
    assert_eq!(h.read("new"), None);
    assert_eq!(report.files_removed, 1);
}

/// The checkpoint pattern (temp file, fsync, rename over the old file) cut before the directory
/// fsync: the old file's inode is gone, so the new one stays, as a committed rename would.
#[test]
fn a_file_replaced_by_a_rename_keeps_its_replacement() {
    let h = Harness::new();
    h.write("checkpoint", b"old").sync_data().unwrap();
    h.fs.sync_dir(&h.dir).unwrap();
    h.write("checkpoint.tmp", b"new").sync_data().unwrap();
    h.fs.rename(&h.path("checkpoint.tmp"), &h.path("checkpoint"))
        .unwrap();
    let report = h.power_loss();
    assert_eq!(h.read("checkpoint").unwrap(), b"new");
    assert_eq!(h.read("checkpoint.tmp"), None);
    assert_eq!(report.entries_not_restored, 1);
}

#[test]
fn a_chain_of_renames_goes_back_to_the_durable_names() {
    let h = Harness::new();
    h.write("a", b"A").sync_data().unwrap();
    h.write("b", b"B").sync_data().unwrap();
    h.fs.sync_dir(&h.dir).unwrap();
    // Swap a and b through c.
    h.fs.rename(&h.path("a"), &h.path("c")).unwrap();
    h.fs.rename(&h.path("b"), &h.path("a")).unwrap();
    h.fs.rename(&h.path("c"), &h.path("b")).unwrap();
    let report = h.power_loss();
    assert_eq!(h.read("a").unwrap(), b"A");
    assert_eq!(h.read("b").unwrap(), b"B");
    assert_eq!(h.read("c"), None);
    assert_eq!(report.renames_undone, 2);
    let names: Vec<_> = std::fs::read_dir(&h.dir).unwrap().collect();
    assert_eq!(names.len(), 2, "no staged file left behind");
}

#[test]
fn a_directory_never_synced_into_its_parent_is_removed_with_its_files() {
    let h = Harness::new();
    let part = h.path("topic-0");
    h.fs.create_dir_all(&part).unwrap();
    let file = h.fs.open(&part.join("0.log"), true).unwrap();
    file.write_all_at(b"batch", 0).unwrap();
    file.sync_data().unwrap();
    h.fs.sync_dir(&part).unwrap();
    let report = h.power_loss();
    assert!(!part.exists());
    assert_eq!(report.dirs_removed, 1);
    assert_eq!(report.files_removed, 1);

    // Once the parent is synced, the directory and its synced file survive.
    let h = Harness::new();
    let part = h.path("topic-0");
    h.fs.create_dir_all(&part).unwrap();
    h.fs.sync_dir(&h.dir).unwrap();
    let file = h.fs.open(&part.join("0.log"), true).unwrap();
    file.write_all_at(b"batch", 0).unwrap();
    file.sync_data().unwrap();
    h.fs.sync_dir(&part).unwrap();
    h.power_loss();
    assert_eq!(std::fs::read(part.join("0.log")).unwrap(), b"batch");
}

#[test]
fn files_the_journal_never_saw_are_left_alone() {
    let h = Harness::new();
    std::fs::write(h.path("before"), b"1").unwrap();
    h.write("a", b"x").sync_data().unwrap();
    h.fs.sync_dir(&h.dir).unwrap();
    // Written by other code (the metadata quorum, say), in a directory the journal tracks and
    // in one it never touched.
    std::fs::write(h.path("other"), b"2").unwrap();
    std::fs::create_dir(h.path("__cluster_metadata-0")).unwrap();
    std::fs::write(h.path("__cluster_metadata-0/x"), b"3").unwrap();
    let report = h.power_loss();
    assert_eq!(h.read("before").unwrap(), b"1");
    assert_eq!(h.read("other").unwrap(), b"2");
    assert_eq!(h.read("__cluster_metadata-0/x").unwrap(), b"3");
    assert!(!report.cut_anything(), "{report}");
}

#[test]
fn a_file_present_when_journaling_began_keeps_its_length_then() {
    let h = Harness::new();
    std::fs::write(h.path("old"), b"durable").unwrap();
    let file = h.fs.open(&h.path("old"), true).unwrap();
    file.write_all_at(b" and not", 7).unwrap();
    h.power_loss();
    assert_eq!(h.read("old").unwrap(), b"durable");
}

#[test]
fn paths_with_tabs_and_newlines_round_trip_through_the_journal() {
    let h = Harness::new();
    let name = "we\tird\nna\\me";
    h.write(name, b"data").sync_data().unwrap();
    h.fs.sync_dir(&h.dir).unwrap();
    h.write(name, b"more");
    let report = h.power_loss();
    assert_eq!(h.read(name).unwrap(), b"data");
    assert_eq!(report.bytes_truncated, 4);
}

#[test]
fn a_torn_last_journal_line_is_ignored_and_garbage_is_refused() {
    let h = Harness::new();
    h.write("a", b"data").sync_data().unwrap();
    h.fs.sync_dir(&h.dir).unwrap();
    let mut journal = std::fs::OpenOptions::new()
        .append(true)
        .open(&h.journal)
        .unwrap();
    journal.write_all(b"sync\t1:").unwrap();
    assert_eq!(h.power_loss(), PowerLossReport::default());
    journal.write_all(b"2\t3\nnonsense\n").unwrap();
    assert!(power_loss(&h.dir, &h.journal).is_err());
}

fn batch(n: usize) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new();
    for i in 0..n {
        builder.push(Record::new(
            1_700_000_000_000 + i as i64,
            Some(format!("k{i}").as_bytes()),
            Some(&[7u8; 100]),
        ));
    }
    builder.build().unwrap().to_vec()
}

/// A log written through the journal, power-lost at a point where part of it was fsynced:
/// every offset below `flushed_offset()` survives, the log reopens (recovering its segments,
/// indexes rebuilt where the cut emptied them) and appends go on from its new end.
#[test]
fn a_power_lost_log_keeps_every_flushed_offset_and_recovers() {
    let h = Harness::new();
    let dir = h.path("topic-0");
    let config = LogConfig {
        segment_bytes: 4096,
        ..LogConfig::default()
    };
    let options = |fs: Arc<dyn FileSystem>| LogOptions {
        fs,
        ..LogOptions::new(config.clone())
    };
    let log = crate::Log::open_with(&dir, options(Arc::new(h.fs.clone()))).unwrap();
    // The broker's LogManager syncs the data directory after creating a partition.
    h.fs.sync_dir(&h.dir).unwrap();
    for round in 0..20 {
        log.append(&mut batch(5), AppendOrigin::Leader { leader_epoch: 1 })
            .unwrap();
        if round % 3 == 0 {
            log.flush().unwrap();
        }
    }
    let flushed = log.flushed_offset();
    let end = log.log_end_offset();
    assert!(flushed > 0 && flushed < end, "{flushed} of {end}");
    // The process dies: nothing more is written, nothing is closed.
    std::mem::forget(log);

    let report = h.power_loss();
    assert!(report.bytes_truncated > 0, "{report}");

    let log = crate::Log::open_with(&dir, options(Arc::new(StdFs))).unwrap();
    assert!(
        log.log_end_offset() >= flushed,
        "{} < {flushed}",
        log.log_end_offset()
    );
    assert!(log.log_end_offset() < end, "the unflushed tail was cut");
    let mut next = 0;
    while next < log.log_end_offset() {
        let slice = log.read(next, 1 << 20, i64::MAX).unwrap();
        let mut bytes = vec![0; slice.len()];
        slice.read_into(&mut bytes).unwrap();
        for b in weir_records::RecordBatches::new(bytes::Bytes::from(bytes)) {
            let b = b.unwrap();
            b.verify_crc().unwrap();
            assert_eq!(b.base_offset(), next, "offsets are contiguous");
            next = b.next_offset();
        }
    }
    assert_eq!(next, log.log_end_offset());
    let info = log
        .append(&mut batch(1), AppendOrigin::Leader { leader_epoch: 2 })
        .unwrap();
    assert_eq!(info.first_offset, next);
}

#[test]
fn a_preview_reports_the_cut_and_changes_nothing() {
    let h = Harness::new();
    let file = h.write("a", b"0123");
    file.sync_data().unwrap();
    h.fs.sync_dir(&h.dir).unwrap();
    file.write_all_at(b"4567", 4).unwrap();
    h.write("b", b"new");
    let preview = power_loss_preview(&h.dir, &h.journal).unwrap();
    assert_eq!(h.read("a").unwrap(), b"01234567");
    assert_eq!(h.read("b").unwrap(), b"new");
    assert_eq!(h.power_loss(), preview);
    assert_eq!((preview.bytes_truncated, preview.files_removed), (4, 1));
}
