//! A real child process appends with an fsync on every append and is SIGKILLed at arbitrary
//! points; every append it acknowledged before the kill must be present after reopening.
//!
//! The child is this same test binary running `child_appender` with an environment variable
//! naming the log directory; without it, `child_appender` does nothing.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fail the test on error"
)]

mod common;

use common::LEADER;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use weir_log::{Log, LogConfig};
use weir_records::{Record, RecordBatchBuilder, RecordBatches};

const CHILD_ENV: &str = "WEIR_LOG_SIGKILL_CHILD_DIR";

fn config() -> LogConfig {
    LogConfig {
        flush_messages: 1,
        segment_bytes: 16 * 1024,
        index_interval_bytes: 512,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

/// The batch that will hold offsets `first..first + n`: each value names its offset.
fn batch_at(first: i64, n: i64) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new();
    for offset in first..first + n {
        let value = format!("v{offset}");
        builder.push(Record::new(1_700_000_000_000, None, Some(value.as_bytes())));
    }
    builder.build().unwrap().to_vec()
}

#[test]
fn child_appender() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let log = Log::open(&dir, config()).unwrap();
    let mut stdout = std::io::stdout().lock();
    loop {
        let first = log.log_end_offset();
        let n = 1 + first % 5;
        let info = log.append(&mut batch_at(first, n), LEADER).unwrap();
        writeln!(stdout, "ack {} {}", info.first_offset, info.last_offset).unwrap();
        stdout.flush().unwrap();
    }
}

/// Reads the whole log and checks every record holds the value written for its offset.
fn verify(dir: &Path, acknowledged: i64) -> i64 {
    let log = Log::open(dir, config()).unwrap();
    let leo = log.log_end_offset();
    assert!(
        leo >= acknowledged,
        "acknowledged up to {acknowledged}, recovered only {leo}"
    );
    let mut offset = 0;
    while offset < leo {
        let slice = log.read(offset, 1 << 20, leo).unwrap();
        for batch in RecordBatches::new(slice.to_bytes().unwrap()) {
            let batch = batch.unwrap();
            batch.verify_crc().unwrap();
            for record in batch.records().unwrap() {
                let record = record.unwrap();
                assert_eq!(record.offset, offset);
                assert_eq!(
                    record.value.as_deref(),
                    Some(format!("v{offset}").as_bytes())
                );
                offset += 1;
            }
        }
    }
    assert_eq!(offset, leo);
    log.close().unwrap();
    leo
}

#[test]
fn sigkilled_appender_loses_no_acknowledged_append() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("events-0");
    let exe = std::env::current_exe().unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..6 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = 10 + seed % 150;
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_appender",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acknowledged = 0;
        let mut acks = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("ack ") else {
                continue;
            };
            let last: i64 = rest.split(' ').nth(1).unwrap().parse().unwrap();
            acknowledged = last + 1;
            acks += 1;
            if acks == kill_after {
                child.kill().unwrap(); // SIGKILL while the child keeps appending
                break;
            }
        }
        child.wait().unwrap();
        assert_eq!(acks, kill_after, "round {round}: the child stopped early");
        let recovered = verify(&dir, acknowledged);
        assert!(recovered >= acknowledged);
        if round % 2 == 1 {
            // Also leave an unclean state for the next child to recover from.
            drop(Log::open(&dir, config()).unwrap());
        }
    }
}
