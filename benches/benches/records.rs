//! weir-records throughput against baselines measured in the same run:
//! - `crc`: splitting 1 MiB of concatenated batches with `RecordBatches` and verifying every
//!   CRC-32C, vs. raw `crc32c::crc32c` over the same buffer;
//! - `decompress/<codec>`: `RecordBatch::records_with_limit` on a batch holding ~1 MiB of records,
//!   vs. the codec library decompressing the same records in one call.
//!
//! After criterion's runs, a timed loop prints one line per case:
//! `records <case>: X MB/s, raw: Y MB/s, ratio: R` (ratio = ours / raw, in decompressed or
//! checked bytes per second).

use bytes::Bytes;
use criterion::{Criterion, black_box};
use std::io::Read;
use std::time::{Duration, Instant};
use weir_records::{Compression, Record, RecordBatch, RecordBatchBuilder, RecordBatches};

const MIB: usize = 1 << 20;

/// Records resembling JSON events, so codecs see realistic redundancy.
fn records(count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| {
            let value = format!(
                r#"{{"user":"user-{}","event":"page_view","path":"/products/{}","ms":{}}}"#,
                i % 1000,
                i % 97,
                1_700_000_000_000u64 + i as u64
            );
            Record::new(
                1_700_000_000_000 + i as i64,
                Some(format!("user-{}", i % 1000).as_bytes()),
                Some(value.as_bytes()),
            )
        })
        .collect()
}

fn build(codec: Compression, records: &[Record]) -> Bytes {
    let mut builder = RecordBatchBuilder::new();
    builder.compression(codec);
    for record in records {
        builder.push(record.clone());
    }
    builder.build().unwrap_or_default()
}

/// At least 1 MiB of concatenated uncompressed batches of 100 records each.
fn one_mib_of_batches() -> Bytes {
    let batch = build(Compression::None, &records(100));
    let mut buf = Vec::with_capacity(MIB + batch.len());
    while buf.len() < MIB {
        buf.extend_from_slice(&batch);
    }
    Bytes::from(buf)
}

fn verify_all(buf: &Bytes) -> usize {
    let mut ok = 0;
    for batch in RecordBatches::new(buf.clone()).flatten() {
        ok += usize::from(batch.verify_crc().is_ok());
    }
    ok
}

/// One decompression case: our batch, and the raw codec call on the same uncompressed records.
struct Case {
    codec: Compression,
    name: &'static str,
    batch: RecordBatch,
    plain_len: usize,
    raw_input: Vec<u8>,
}

impl Case {
    fn new(codec: Compression, name: &'static str, records: &[Record]) -> Option<Self> {
        let batch = RecordBatch::new(build(codec, records)).ok()?;
        let plain = build(Compression::None, records);
        let plain = plain.get(weir_records::batch::BATCH_HEADER_LEN..)?.to_vec();
        let raw_input = match codec {
            Compression::Gzip => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                std::io::Write::write_all(&mut e, &plain).ok()?;
                e.finish().ok()?
            }
            Compression::Snappy => snap::raw::Encoder::new().compress_vec(&plain).ok()?,
            Compression::Lz4 => {
                let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
                std::io::Write::write_all(&mut e, &plain).ok()?;
                e.finish().ok()?
            }
            Compression::Zstd => zstd::bulk::compress(&plain, 3).ok()?,
            _ => return None,
        };
        Some(Self {
            codec,
            name,
            batch,
            plain_len: plain.len(),
            raw_input,
        })
    }

    /// Decompression only: `records_with_limit` decompresses eagerly and decodes lazily.
    fn ours(&self) -> usize {
        self.batch
            .records_with_limit(64 * MIB)
            .map(|r| r.size_hint().0 + 1)
            .unwrap_or_default()
    }

    fn raw(&self) -> usize {
        let input = self.raw_input.as_slice();
        let mut out = Vec::with_capacity(self.plain_len);
        let n = match self.codec {
            Compression::Gzip => flate2::read::GzDecoder::new(input)
                .read_to_end(&mut out)
                .ok(),
            Compression::Snappy => snap::raw::Decoder::new()
                .decompress_vec(input)
                .ok()
                .map(|v| v.len()),
            Compression::Lz4 => lz4_flex::frame::FrameDecoder::new(input)
                .read_to_end(&mut out)
                .ok(),
            Compression::Zstd => zstd::stream::read::Decoder::new(input)
                .and_then(|mut d| d.read_to_end(&mut out))
                .ok(),
            _ => None,
        };
        n.unwrap_or_default()
    }
}

fn cases() -> Vec<Case> {
    // ~1 MiB of uncompressed records per batch.
    let records = records(12_000);
    [
        (Compression::Gzip, "gzip"),
        (Compression::Snappy, "snappy"),
        (Compression::Lz4, "lz4"),
        (Compression::Zstd, "zstd"),
    ]
    .into_iter()
    .filter_map(|(codec, name)| Case::new(codec, name, &records))
    .collect()
}

fn benches(c: &mut Criterion, buf: &Bytes, cases: &[Case]) {
    let mut group = c.benchmark_group("crc");
    group.throughput(criterion::Throughput::Bytes(buf.len() as u64));
    group.bench_function("record_batches", |b| b.iter(|| verify_all(black_box(buf))));
    group.bench_function("raw_crc32c", |b| b.iter(|| crc32c::crc32c(black_box(buf))));
    group.finish();

    let mut group = c.benchmark_group("decompress");
    for case in cases {
        group.throughput(criterion::Throughput::Bytes(case.plain_len as u64));
        group.bench_function(format!("{}/records", case.name), |b| b.iter(|| case.ours()));
        group.bench_function(format!("{}/raw", case.name), |b| b.iter(|| case.raw()));
    }
    group.finish();
}

/// Best throughput in MB/s of `f` processing `bytes` per call, from several short rounds.
fn best_rate(bytes: usize, round: Duration, f: &mut dyn FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut calls = 0u64;
    loop {
        black_box(f());
        calls += 1;
        if start.elapsed() >= round {
            break;
        }
    }
    (bytes as f64 * calls as f64) / start.elapsed().as_secs_f64() / 1e6
}

/// Ours and raw, interleaved in rounds so that load from other processes hits both alike; the
/// best round of each counts.
fn compare(
    bytes: usize,
    budget: Duration,
    mut ours: impl FnMut() -> usize,
    mut raw: impl FnMut() -> usize,
) -> (f64, f64) {
    const ROUNDS: u32 = 8;
    let round = budget / (2 * ROUNDS);
    let (mut best_ours, mut best_raw) = (0f64, 0f64);
    for _ in 0..ROUNDS {
        best_ours = best_ours.max(best_rate(bytes, round, &mut ours));
        best_raw = best_raw.max(best_rate(bytes, round, &mut raw));
    }
    (best_ours, best_raw)
}

fn summary(line: &str, ours: f64, raw: f64) {
    // Decompress cases count decompressed bytes; crc counts the checked buffer.
    println!(
        "records {line}: {ours:.0} MB/s, raw: {raw:.0} MB/s, ratio: {:.2}",
        ours / raw
    );
}

fn main() {
    let test_mode = std::env::args().any(|a| a == "--test");
    let buf = one_mib_of_batches();
    let cases = cases();

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1_000))
        .sample_size(10)
        .configure_from_args();
    benches(&mut c, &buf, &cases);
    c.final_summary();

    // In `--test` mode one call per round is enough to prove the cases run.
    let budget = if test_mode {
        Duration::ZERO
    } else {
        Duration::from_millis(800)
    };
    let (ours, raw) = compare(
        buf.len(),
        budget,
        || verify_all(&buf),
        || crc32c::crc32c(&buf) as usize,
    );
    summary("crc", ours, raw);
    for case in &cases {
        let (ours, raw) = compare(case.plain_len, budget, || case.ours(), || case.raw());
        summary(&format!("decompress {}", case.name), ours, raw);
    }
}
