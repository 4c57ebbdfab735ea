//! The seed corpus of the `decode_record_batch` fuzz target (`fuzz/seeds/decode_record_batch/`):
//! one batch per codec, a control batch, concatenated batches, and legacy message sets.
//!
//! `WEIR_WRITE_SEEDS=1 cargo test -p weir-records --test fuzz_seeds` rewrites the files; a plain
//! run checks that every committed seed still decodes cleanly, so the fuzzer starts from inputs
//! that reach deep into the decoders.
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

use bytes::Bytes;
use std::io::Write;
use std::path::PathBuf;
use weir_records::{
    Compression, EndTransactionMarker, Header, LegacyRecords, Record, RecordBatch,
    RecordBatchBuilder, RecordBatches,
};

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/decode_record_batch")
}

fn batch(codec: Compression) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new();
    builder.compression(codec).base_offset(7).producer(1, 0, 0);
    for i in 0..4 {
        builder.push(
            Record::new(
                1_000 + i,
                (i % 2 == 0).then_some(b"key"),
                Some(b"value value value"),
            )
            .with_header(Header::new(b"h", Some(b"x")))
            .with_header(Header::new(b"h", None)),
        );
    }
    builder.build().unwrap().to_vec()
}

fn legacy_message(offset: i64, magic: u8, attributes: u8, value: &[u8]) -> Vec<u8> {
    let mut body = vec![magic, attributes];
    if magic == 1 {
        body.extend_from_slice(&1_000i64.to_be_bytes());
    }
    body.extend_from_slice(&(-1i32).to_be_bytes());
    body.extend_from_slice(&(value.len() as i32).to_be_bytes());
    body.extend_from_slice(value);
    let mut out = offset.to_be_bytes().to_vec();
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = vec![
        ("batch-none", batch(Compression::None)),
        ("batch-gzip", batch(Compression::Gzip)),
        ("batch-snappy", batch(Compression::Snappy)),
        ("batch-lz4", batch(Compression::Lz4)),
        ("batch-zstd", batch(Compression::Zstd)),
    ];
    let marker = EndTransactionMarker::commit(3)
        .batch_builder(1, 0, 2_000)
        .build()
        .unwrap();
    seeds.push(("batch-control", marker.to_vec()));
    let mut concatenated = batch(Compression::None);
    concatenated.extend(batch(Compression::Lz4));
    concatenated.extend(marker.to_vec());
    seeds.push(("batches-concatenated", concatenated));

    let mut v0 = legacy_message(0, 0, 0, b"v0 message");
    v0.extend(legacy_message(1, 0, 0, b"another"));
    seeds.push(("legacy-v0", v0));
    let inner: Vec<u8> = (0..3)
        .flat_map(|i| legacy_message(i, 1, 0, b"inner"))
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&inner).unwrap();
    seeds.push((
        "legacy-v1-gzip",
        legacy_message(2, 1, 1, &gz.finish().unwrap()),
    ));
    seeds
}

#[test]
fn seed_corpus_is_current_and_decodes() {
    let dir = seed_dir();
    if std::env::var_os("WEIR_WRITE_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = Bytes::from(std::fs::read(&path).unwrap());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("legacy") {
            let records: Vec<Record> = LegacyRecords::new(bytes).collect::<Result<_, _>>().unwrap();
            assert!(!records.is_empty(), "{name}");
        } else {
            for batch in RecordBatches::new(bytes) {
                let batch: RecordBatch = batch.unwrap();
                batch.verify_crc().unwrap();
                assert!(batch.records().unwrap().all(|r| r.is_ok()), "{name}");
            }
        }
        count += 1;
    }
    assert!(
        count >= seeds().len(),
        "seed files missing from {}",
        dir.display()
    );
}
