//! Arbitrary and mutated bytes through every decoding entry point: errors are fine, panics and
//! unbounded allocations are not.
#![expect(
    clippy::unwrap_used,
    reason = "fixture helpers outside #[test] fail loudly"
)]

use bytes::Bytes;
use proptest::prelude::*;
use weir_records::batch::{BATCH_HEADER_LEN, CRC_START};
use weir_records::{
    Compression, EndTransactionMarker, Header, LegacyRecords, Record, RecordBatch,
    RecordBatchBuilder, RecordBatches,
};

const LIMIT: usize = 256 * 1024;

/// Runs every decoder over `bytes`, consuming all output.
fn decode_all(bytes: &[u8]) {
    let bytes = Bytes::copy_from_slice(bytes);
    for batch in RecordBatches::new(bytes.clone()).flatten() {
        let _ = batch.verify_crc();
        if let Ok(records) = batch.records_with_limit(LIMIT) {
            for record in records.flatten() {
                let _ = EndTransactionMarker::from_record(&record);
            }
        }
    }
    if let Ok(batch) = RecordBatch::new(bytes.clone()) {
        let _ = batch.records().map(|r| r.count());
    }
    for record in LegacyRecords::with_limit(bytes, LIMIT) {
        let _ = record;
    }
}

fn codec(id: u8) -> Compression {
    Compression::from_id(id % 5).unwrap()
}

fn valid_batch(codec: Compression, values: &[Vec<u8>]) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new();
    builder.compression(codec);
    for (i, value) in values.iter().enumerate() {
        builder.push(
            Record::new(i as i64, Some(b"key"), Some(value))
                .with_header(Header::new(b"h", Some(value))),
        );
    }
    match builder.build() {
        Ok(batch) => batch.to_vec(),
        // A codec whose feature is off: an uncompressed payload under that codec's id.
        Err(_) => {
            let mut batch = builder
                .compression(Compression::None)
                .build()
                .unwrap()
                .to_vec();
            batch[22] |= codec.id();
            reseal(&mut batch);
            batch
        }
    }
}

/// Fixes the batch length and CRC so a mutated batch reaches the record decoder.
fn reseal(batch: &mut [u8]) {
    let len = (batch.len() - 12) as i32;
    batch[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn arbitrary_payload_under_a_valid_header_never_panics(
        id: u8,
        count in -2i32..64,
        payload in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut batch = valid_batch(codec(id), &[]);
        batch.truncate(BATCH_HEADER_LEN);
        batch[57..61].copy_from_slice(&count.to_be_bytes());
        batch.extend_from_slice(&payload);
        reseal(&mut batch);
        decode_all(&batch);
    }

    #[test]
    fn mutated_batches_never_panic(
        id: u8,
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        resealed: bool,
    ) {
        let mut batch = valid_batch(codec(id), &values);
        for (at, byte) in flips {
            let i = at.index(batch.len());
            batch[i] ^= byte | 1;
        }
        if resealed && batch.len() > BATCH_HEADER_LEN {
            batch[16] = 2;
            reseal(&mut batch);
        }
        decode_all(&batch);
    }

    #[test]
    fn legacy_messages_with_valid_crc_never_panic(
        magic in 0u8..2,
        attributes: u8,
        offset: i64,
        rest in proptest::collection::vec(any::<u8>(), 0..256),
        compressed_inner: bool,
    ) {
        // A wrapper whose value is a valid compressed stream of arbitrary inner bytes reaches
        // the inner message parser; otherwise the fields themselves are arbitrary.
        let mut body = vec![magic, attributes];
        if compressed_inner {
            body[1] = 1; // gzip
            if magic == 1 {
                body.extend_from_slice(&0i64.to_be_bytes());
            }
            body.extend_from_slice(&(-1i32).to_be_bytes());
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, &rest).unwrap();
            let inner = gz.finish().unwrap();
            body.extend_from_slice(&(inner.len() as i32).to_be_bytes());
            body.extend_from_slice(&inner);
        } else {
            body.extend_from_slice(&rest);
        }
        let mut message = offset.to_be_bytes().to_vec();
        message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        message.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        message.extend_from_slice(&body);
        decode_all(&message);
    }

    #[test]
    fn truncated_concatenations_end_with_one_error(
        cut in any::<prop::sample::Index>(),
    ) {
        let one = valid_batch(Compression::None, &[b"a".to_vec(), b"bc".to_vec()]);
        let mut two = one.clone();
        two.extend_from_slice(&one);
        let cut = cut.index(two.len());
        let results: Vec<_> = RecordBatches::new(Bytes::copy_from_slice(&two[..cut])).collect();
        let errors = results.iter().filter(|r| r.is_err()).count();
        prop_assert!(errors <= 1);
        prop_assert_eq!(errors == 0, cut == 0 || cut == one.len());
    }
}
