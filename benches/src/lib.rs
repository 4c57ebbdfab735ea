//! Shared helpers for Weir's criterion benchmarks (see `benches/benches/*.rs`).
//!
//! Every benchmark reports a ratio against a baseline measured in the same run, so the figures
//! stay meaningful on whatever machine runs them: besides criterion's own statistics, each case
//! prints one summary line `<group> <case>: X MB/s, raw: Y MB/s, ratio: R`.

use std::time::{Duration, Instant};

/// Whether criterion runs in `--test` mode (`cargo bench -- --test`), where every benchmark
/// runs once to prove it still works; summaries then use a very short measurement.
pub fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}

/// Mean seconds per call of `f`, measured for about `budget` after a short warm-up.
pub fn seconds_per_iter(budget: Duration, mut f: impl FnMut()) -> f64 {
    let budget = if test_mode() {
        Duration::from_millis(5)
    } else {
        budget
    };
    let warm_up = Instant::now();
    while warm_up.elapsed() < budget / 5 {
        f();
    }
    let start = Instant::now();
    let mut iterations = 0u64;
    while start.elapsed() < budget || iterations == 0 {
        f();
        iterations += 1;
    }
    start.elapsed().as_secs_f64() / iterations as f64
}

/// Prints the summary line for a case that moves `bytes` per iteration.
pub fn report(group: &str, case: &str, bytes: usize, seconds: f64, baseline_seconds: f64) {
    let mb = bytes as f64 / 1e6;
    let rate = mb / seconds;
    let raw = mb / baseline_seconds;
    println!(
        "{group} {case}: {rate:.0} MB/s, raw: {raw:.0} MB/s, ratio: {:.2}",
        rate / raw
    );
}
