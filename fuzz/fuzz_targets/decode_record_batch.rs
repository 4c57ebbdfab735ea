//! Arbitrary bytes as a fetch response's or segment's records: split into batches, verify each
//! CRC, decode every record (decompression included, bounded), parse control records, and read
//! the same bytes as a legacy message set. Any panic, or an allocation past the limits, is a bug.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_records::{EndTransactionMarker, LegacyRecords, RecordBatches};

/// Decompression limit: small enough that a bomb is caught quickly, large enough for the seeds.
const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    for batch in RecordBatches::new(bytes.clone()) {
        let Ok(batch) = batch else { break };
        // Decode whatever the CRC says, so mutated payloads still reach the record decoder.
        let _ = batch.verify_crc();
        let control = batch.attributes().is_control();
        if let Ok(records) = batch.records_with_limit(LIMIT) {
            for record in records.flatten() {
                if control {
                    let _ = EndTransactionMarker::from_record(&record);
                }
            }
        }
    }
    for record in LegacyRecords::with_limit(bytes, LIMIT) {
        let _ = record;
    }
});
