//! Decompression bombs are refused without allocating much beyond the caller's limit: the
//! bytes allocated while decoding a 32 MiB bomb under a 64 KiB limit stay within the limit plus
//! the codec's fixed working memory, whatever the bomb's size.
//!
//! One test in this binary, so no other test thread allocates while it measures. libzstd
//! allocates its context and window with C `malloc`, which this allocator does not see; the
//! window is bounded separately (see the zstd module's tests).
#![cfg(all(
    feature = "gzip",
    feature = "snappy",
    feature = "lz4",
    feature = "zstd"
))]
#![expect(
    clippy::unwrap_used,
    reason = "fixture helpers outside #[test] fail loudly"
)]

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use weir_records::{Compression, Error, Record, RecordBatch, RecordBatchBuilder};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const LIMIT: usize = 64 * 1024;
const BOMB: usize = 32 << 20;

fn bomb(codec: Compression) -> RecordBatch {
    let mut builder = RecordBatchBuilder::new();
    builder
        .compression(codec)
        .push(Record::new(0, None, Some(&vec![0u8; BOMB])));
    RecordBatch::new(builder.build().unwrap()).unwrap()
}

/// Bytes allocated (or grown by reallocation) while `f` runs.
fn allocated_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let region = Region::new(GLOBAL);
    let out = f();
    let change = region.change();
    (
        out,
        change.bytes_allocated + change.bytes_reallocated.max(0) as usize,
    )
}

#[test]
fn bombs_are_refused_within_the_limit_plus_codec_working_memory() {
    // Working memory besides the output: inflate state and window for gzip; read buffers.
    for (codec, working_memory) in [
        (Compression::Gzip, 128 << 10),
        (Compression::Snappy, 16 << 10),
        (Compression::Lz4, 16 << 10),
        (Compression::Zstd, 128 << 10),
    ] {
        let batch = bomb(codec);
        let (result, allocated) = allocated_during(|| batch.records_with_limit(LIMIT).err());
        assert_eq!(
            result,
            Some(Error::DecompressionLimit {
                codec,
                limit: LIMIT
            })
        );
        assert!(
            allocated <= LIMIT + working_memory,
            "{codec:?} allocated {allocated} bytes for a {LIMIT}-byte limit"
        );
        eprintln!(
            "{codec:?}: {} byte batch, refused after allocating {allocated} bytes",
            batch.size()
        );
    }
}
