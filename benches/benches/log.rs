//! Log append and read throughput against raw file I/O on the same filesystem, in the same run.
//!
//! Prints one line per case, `append <case>: X MB/s, raw: Y MB/s, ratio: R` (and below it the
//! same comparison in on-CPU time, robust to other processes holding the CPUs), then runs the
//! criterion benchmarks. `cargo bench -p weir-benches --bench log -- --test` runs every case
//! once on a few MiB to keep it compiling and working. Set `WEIR_BENCH_DIR` to measure on a
//! specific filesystem (default: the system temp directory).

#![expect(clippy::unwrap_used, reason = "a benchmark fails loudly")]

use criterion::{Criterion, Throughput};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use weir_log::{AppendOrigin, Log, LogConfig, LogManager, LogManagerOptions};
use weir_records::{Record, RecordBatchBuilder};

const BATCH_BYTES: usize = 16 * 1024;
const FSYNC_EVERY: usize = 1 << 20;
const LEADER: AppendOrigin = AppendOrigin::Leader { leader_epoch: 0 };

/// Time this thread has spent on a CPU (user and kernel). Unlike wall-clock time it leaves out
/// waiting for a CPU that other processes hold, the main noise on a shared 2-CPU machine.
fn cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// Wall-clock and on-CPU time of one timed run.
#[derive(Clone, Copy)]
struct Timed {
    wall: Duration,
    cpu: Duration,
}

impl Timed {
    fn since(start: Instant, cpu_start: Duration) -> Self {
        Self {
            wall: start.elapsed(),
            cpu: cpu_time().saturating_sub(cpu_start),
        }
    }
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("WEIR_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

/// A batch of records of `record_bytes` values filling about 16 KiB.
fn batch(record_bytes: usize) -> (Vec<u8>, usize) {
    let mut builder = RecordBatchBuilder::new();
    let value = vec![0x5a; record_bytes];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut count = 0;
    while builder.clone().build().unwrap().len() + record_bytes + 16 <= BATCH_BYTES {
        builder.push(Record::new(
            now,
            Some(format!("key-{count}").as_bytes()),
            Some(&value),
        ));
        count += 1;
    }
    (builder.build().unwrap().to_vec(), count)
}

fn config(fsync: bool, records_per_batch: usize) -> LogConfig {
    LogConfig {
        flush_messages: if fsync {
            (FSYNC_EVERY / BATCH_BYTES * records_per_batch) as i64
        } else {
            i64::MAX
        },
        ..LogConfig::default()
    }
}

fn append_log(dir: &Path, template: &[u8], records: usize, batches: usize, fsync: bool) -> Timed {
    let log = Log::open(dir, config(fsync, records)).unwrap();
    let mut buf = template.to_vec();
    let (cpu, start) = (cpu_time(), Instant::now());
    for _ in 0..batches {
        log.append(&mut buf, LEADER).unwrap();
    }
    let timed = Timed::since(start, cpu);
    log.close().unwrap();
    timed
}

fn append_raw(path: &Path, template: &[u8], batches: usize, fsync: bool) -> Timed {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let per_sync = FSYNC_EVERY / BATCH_BYTES;
    let (cpu, start) = (cpu_time(), Instant::now());
    for i in 0..batches {
        file.write_all(template).unwrap();
        if fsync && (i + 1) % per_sync == 0 {
            file.sync_data().unwrap();
        }
    }
    let timed = Timed::since(start, cpu);
    // Untimed, like the log's close: otherwise this run's dirty pages are written back during
    // the next log run and slow it down, while the log leaves nothing behind for the raw run.
    file.sync_data().unwrap();
    timed
}

fn read_log(log: &Log, buf: &mut [u8]) -> (Timed, usize) {
    let leo = log.log_end_offset();
    let (cpu, start) = (cpu_time(), Instant::now());
    let mut offset = 0;
    let mut total = 0;
    while offset < leo {
        let slice = log.read(offset, 1 << 20, leo).unwrap();
        slice.read_into(buf).unwrap();
        total += slice.len();
        offset = slice.next_offset();
    }
    (Timed::since(start, cpu), total)
}

fn read_raw(path: &Path, buf: &mut [u8]) -> (Timed, usize) {
    let mut file = File::open(path).unwrap();
    let (cpu, start) = (cpu_time(), Instant::now());
    let mut total = 0;
    loop {
        let n = file.read(&mut buf[..1 << 20]).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    (Timed::since(start, cpu), total)
}

fn mbps(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

/// Measures each side `rounds` times, alternating, and keeps each side's best run; prints the
/// summary line, then the same comparison in on-CPU time per MB.
fn compare(
    name: &str,
    rounds: usize,
    mut log: impl FnMut() -> (Timed, usize),
    mut raw: impl FnMut() -> (Timed, usize),
) {
    let (mut best_log, mut best_raw) = (0f64, 0f64);
    let (mut cpu_log, mut cpu_raw) = (f64::MAX, f64::MAX);
    let per_mb = |cpu: Duration, n: usize| cpu.as_secs_f64() * 1e6 / (n as f64 / 1e6);
    for _ in 0..rounds {
        let (t, n) = log();
        best_log = best_log.max(mbps(n, t.wall));
        cpu_log = cpu_log.min(per_mb(t.cpu, n));
        let (t, n) = raw();
        best_raw = best_raw.max(mbps(n, t.wall));
        cpu_raw = cpu_raw.min(per_mb(t.cpu, n));
    }
    println!(
        "{name}: {best_log:.0} MB/s, raw: {best_raw:.0} MB/s, ratio: {:.2}",
        best_log / best_raw
    );
    println!(
        "  on-CPU time: {cpu_log:.0} us/MB, raw: {cpu_raw:.0} us/MB, ratio: {:.2}",
        cpu_raw / cpu_log
    );
}

fn ratios(test_mode: bool) {
    let root = bench_dir();
    let rounds = if test_mode { 1 } else { 6 };
    let cases = [
        ("1KiB records, 16KiB batches", 1024),
        ("100B records, 16KiB batches", 100),
    ];
    for (label, record_bytes) in cases {
        let (template, records) = batch(record_bytes);
        for fsync in [false, true] {
            let mib = match (test_mode, fsync) {
                (true, _) => 2,
                (false, false) => 256,
                (false, true) => 64,
            };
            let batches = mib * (1 << 20) / template.len();
            let bytes = batches * template.len();
            let mut run = 0;
            let name = format!(
                "append {label}{}",
                if fsync { ", fsync every 1 MiB" } else { "" }
            );
            let log_dir = root.path().join("log");
            let raw_path = root.path().join("raw");
            compare(
                &name,
                rounds,
                || {
                    run += 1;
                    let dir = log_dir.join(format!("bench-{run}"));
                    let t = append_log(&dir, &template, records, batches, fsync);
                    std::fs::remove_dir_all(&dir).unwrap();
                    (t, bytes)
                },
                || {
                    let t = append_raw(&raw_path, &template, batches, fsync);
                    (t, bytes)
                },
            );
        }
    }
    // Reads from the page cache: a freshly written log and file of the same bytes.
    let (template, records) = batch(1024);
    let mib = if test_mode { 2 } else { 256 };
    let batches = mib * (1 << 20) / template.len();
    let dir = root.path().join("read-log");
    append_log(&dir, &template, records, batches, false);
    let raw_path = root.path().join("read-raw");
    append_raw(&raw_path, &template, batches, false);
    let log = Log::open(&dir, LogConfig::default()).unwrap();
    let mut buf = vec![0u8; 2 << 20];
    let mut buf2 = vec![0u8; 2 << 20];
    compare(
        "read 1KiB records, 1 MiB fetches from page cache",
        rounds * 4,
        || read_log(&log, &mut buf),
        || read_raw(&raw_path, &mut buf2),
    );
}

/// Resident memory of this process in bytes, from /proc (0 where unavailable).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Writes `n` partition directories straight in the on-disk format (docs/log-format.md), each
/// with two segments of one 10-record batch (offsets 0-9 and 10-19): cleanly shut down (index
/// files, checkpoint at 20, marker), or as a crash leaves them (no marker, recovery point 10,
/// so the last segment of every log is scanned and CRC-checked).
fn write_partitions(root: &Path, n: usize, clean: bool) {
    let mut builder = RecordBatchBuilder::new();
    for i in 0..10 {
        builder.push(Record::new(
            1_700_000_000_000 + i,
            Some(b"key"),
            Some(&[7u8; 100]),
        ));
    }
    let first = builder.build().unwrap().to_vec();
    let mut second = first.clone();
    weir_records::batch::set_base_offset(&mut second, 10).unwrap();
    let mut time_index = 1_700_000_000_009i64.to_be_bytes().to_vec();
    time_index.extend_from_slice(&9u32.to_be_bytes());
    for p in 0..n {
        let dir = root.join(format!("topic-{p}"));
        std::fs::create_dir_all(&dir).unwrap();
        for (base, batch) in [(0, &first), (10, &second)] {
            let name = format!("{base:020}");
            std::fs::write(dir.join(format!("{name}.log")), batch).unwrap();
            if clean || base == 0 {
                std::fs::write(dir.join(format!("{name}.index")), []).unwrap();
                std::fs::write(dir.join(format!("{name}.timeindex")), &time_index).unwrap();
            }
        }
        if clean {
            std::fs::write(dir.join("log-offsets.checkpoint"), "0\n20 0\n").unwrap();
            std::fs::write(dir.join(".clean-shutdown"), []).unwrap();
        } else {
            std::fs::write(dir.join("log-offsets.checkpoint"), "0\n10 0\n").unwrap();
        }
    }
}

fn open_partitions(test_mode: bool) {
    let n = if test_mode { 200 } else { 10_000 };
    for clean in [true, false] {
        let root = bench_dir();
        write_partitions(root.path(), n, clean);
        let (rss, files) = (rss_bytes(), open_files());
        let start = Instant::now();
        let mut options =
            LogManagerOptions::new(vec![root.path().to_path_buf()], LogConfig::default());
        options.open_threads = 4;
        let manager = LogManager::open(options).unwrap();
        let elapsed = start.elapsed();
        let (rss_after, files_after) = (rss_bytes(), open_files());
        assert_eq!(manager.len(), n);
        assert!(
            manager
                .logs()
                .iter()
                .all(|(_, log)| log.log_end_offset() == 20)
        );
        println!(
            "open {n} partitions ({}): {:.0} ms, +{:.1} MiB RSS, +{} open files",
            if clean { "clean" } else { "after a crash" },
            elapsed.as_secs_f64() * 1e3,
            rss_after.saturating_sub(rss) as f64 / (1 << 20) as f64,
            files_after.saturating_sub(files),
        );
        drop(manager);
    }
}

fn criterion_benches(c: &mut Criterion) {
    let root = bench_dir();
    let mut group = c.benchmark_group("log");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(300));
    for (label, record_bytes) in [("append_1KiB_records", 1024), ("append_100B_records", 100)] {
        let (template, records) = batch(record_bytes);
        group.throughput(Throughput::Bytes(template.len() as u64));
        let dir = root.path().join(label);
        let log = Log::open(&dir, config(false, records)).unwrap();
        let mut buf = template.clone();
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    // Keep the log (and the dirty page cache) small between timed runs.
                    log.truncate_fully_and_start_at(log.log_end_offset())
                        .unwrap();
                    let run = (iters - done).min(2048);
                    let start = Instant::now();
                    for _ in 0..run {
                        log.append(&mut buf, LEADER).unwrap();
                    }
                    elapsed += start.elapsed();
                    done += run;
                }
                elapsed
            });
        });
    }
    group.finish();
}

fn main() {
    let test_mode = std::env::args().any(|a| a == "--test");
    ratios(test_mode);
    open_partitions(test_mode);
    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion);
    criterion.final_summary();
}
