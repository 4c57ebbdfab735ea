//! The disk's floor for durable acknowledgement: what a perfect group commit gets from this
//! machine's `fdatasync`, with nothing of Weir in the way.
//!
//! A writer thread appends `SIZE`-byte records to a file on a fixed schedule of `RATE`/s; a
//! syncer thread `fdatasync`s whatever was written since its last call, in a loop. A record's
//! latency is from the end of its `write` to the end of the first `fdatasync` that started
//! after it: the least a durable acknowledgement of that record can wait. The replication
//! benchmark (`benches/scripts/replication.py`) runs this beside the broker's produce latency
//! at the same rates, in the same run, and reports the ratio.
//!
//! ```text
//! group-commit-baseline RATE SECONDS DIR [SIZE]
//! ```
//!
//! Prints one line: `rate=… p50_ms=… p99_ms=… p999_ms=… fsyncs=… fsync_p50_ms=… fsync_p99_ms=…`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [rate, seconds, dir, rest @ ..] = args.as_slice() else {
        return Err("usage: group-commit-baseline RATE SECONDS DIR [SIZE]".into());
    };
    let rate: u64 = rate.parse()?;
    let seconds: u64 = seconds.parse()?;
    let size: usize = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(1024);
    if rate == 0 || seconds == 0 {
        return Err("RATE and SECONDS must be positive".into());
    }
    let count = usize::try_from(rate.saturating_mul(seconds))?;
    let path = PathBuf::from(dir).join(format!("group-commit-baseline-{}", std::process::id()));
    let result = run(&path, rate, count, size);
    let _ = std::fs::remove_file(&path);
    let report = result?;
    println!("{report}");
    Ok(())
}

/// Nanoseconds since the start, so both threads share one clock in atomics.
fn since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn run(path: &PathBuf, rate: u64, count: usize, size: usize) -> Result<String> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    let syncing = file.try_clone()?;
    let start = Instant::now();
    let written: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let appended = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));

    let syncer = {
        let (appended, finished) = (appended.clone(), finished.clone());
        std::thread::spawn(move || -> Result<(Vec<u64>, Vec<f64>)> {
            let mut durable_at = vec![0u64; count];
            let mut fsyncs = Vec::new();
            let mut synced = 0;
            loop {
                // Read `finished` first: once it is set, `appended` is final.
                let done = finished.load(Ordering::Acquire);
                let upto = appended.load(Ordering::Acquire);
                if upto == synced {
                    if done {
                        return Ok((durable_at, fsyncs));
                    }
                    std::thread::sleep(Duration::from_micros(20));
                    continue;
                }
                let began = Instant::now();
                syncing.sync_data()?;
                fsyncs.push(began.elapsed().as_secs_f64() * 1e3);
                let now = since(start);
                for at in durable_at.get_mut(synced..upto).into_iter().flatten() {
                    *at = now;
                }
                synced = upto;
            }
        })
    };

    let record = vec![b'x'; size];
    let interval_ns = 1_000_000_000 / rate;
    for (i, slot) in written.iter().enumerate() {
        let due = Duration::from_nanos(interval_ns.saturating_mul(u64::try_from(i)?));
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        file.write_all(&record)?;
        slot.store(since(start), Ordering::Relaxed);
        appended.store(i + 1, Ordering::Release);
    }
    finished.store(true, Ordering::Release);
    let (durable_at, mut fsyncs) = syncer.join().map_err(|_| "the syncer thread panicked")??;

    let mut latencies: Vec<f64> = written
        .iter()
        .zip(&durable_at)
        .map(|(w, d)| d.saturating_sub(w.load(Ordering::Relaxed)) as f64 / 1e6)
        .collect();
    latencies.sort_by(f64::total_cmp);
    fsyncs.sort_by(f64::total_cmp);
    Ok(format!(
        "rate={rate} p50_ms={:.2} p99_ms={:.2} p999_ms={:.2} fsyncs={} fsync_p50_ms={:.2} fsync_p99_ms={:.2}",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 99.9),
        fsyncs.len(),
        percentile(&fsyncs, 50.0),
        percentile(&fsyncs, 99.0),
    ))
}

/// Nearest-rank percentile of sorted samples (the bench script's definition).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).round() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
