//! Golden bytes: request frames captured from real Kafka clients by `tests/golden/capture.sh`
//! (see `tests/golden/README.md` for the clients and versions).
#![cfg(test)]

use bytes::{Bytes, BytesMut};
use std::path::{Path, PathBuf};
use weir_protocol::frame::SIZE_PREFIX_LEN;
use weir_protocol::header::{self, DecodedRequest};
use weir_protocol::messages::RequestBody;
use weir_records::RecordBatches;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every captured frame, as (path relative to `tests/golden`, bytes), sorted by path.
fn fixtures() -> Vec<(String, Bytes)> {
    let root = golden_dir();
    let mut out = Vec::new();
    for client in std::fs::read_dir(&root).unwrap() {
        let client = client.unwrap().path();
        if !client.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&client).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "bin") {
                let name = path.strip_prefix(&root).unwrap().display().to_string();
                out.push((name, Bytes::from(std::fs::read(&path).unwrap())));
            }
        }
    }
    out.sort();
    out
}

/// `<seq>-<ApiName>-v<version>.bin` → (ApiName, version).
fn name_and_version(path: &str) -> (String, i16) {
    let file = path.rsplit('/').next().unwrap().trim_end_matches(".bin");
    let mut parts = file.splitn(2, '-');
    let _seq = parts.next().unwrap();
    let (api, version) = parts.next().unwrap().rsplit_once("-v").unwrap();
    (api.to_owned(), version.parse().unwrap())
}

/// Guards against codec bugs that only real clients' bytes expose: a frame a client actually
/// sent must decode, and re-encoding the decoded header and body must give back the very same
/// bytes. A difference means the codec loses or reorders something (tagged fields, the header
/// v2 client id, a nullable or compact length, a default-valued field), which would corrupt
/// anything the broker forwards or re-encodes.
#[test]
fn client_frames_decode_and_re_encode_byte_for_byte() {
    let fixtures = fixtures();
    assert!(
        fixtures.len() >= 30,
        "expected the captured fixtures under {}, found {}",
        golden_dir().display(),
        fixtures.len()
    );
    let mut failures = Vec::new();
    for (path, frame) in &fixtures {
        let decoded = match header::decode_request(frame.clone()) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{path}: decode failed: {e}"));
                continue;
            }
        };
        let (api, version) = name_and_version(path);
        assert_eq!(
            decoded.trailing_bytes, 0,
            "{path}: bytes left after the body"
        );
        assert_eq!(decoded.api_key.name(), api, "{path}");
        assert_eq!(decoded.header.request_api_version, version, "{path}");

        let mut buf = BytesMut::new();
        if let Err(e) = header::encode_request(&mut buf, &decoded.header, &decoded.body) {
            failures.push(format!("{path}: encode failed: {e}"));
            continue;
        }
        let size = u32::from_be_bytes(buf[..SIZE_PREFIX_LEN].try_into().unwrap());
        assert_eq!(
            size as usize,
            buf.len() - SIZE_PREFIX_LEN,
            "{path}: size prefix"
        );
        let encoded = &buf[SIZE_PREFIX_LEN..];
        if encoded != &frame[..] {
            let at = encoded
                .iter()
                .zip(frame.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(encoded.len().min(frame.len()));
            failures.push(format!(
                "{path}: re-encoded {} bytes differ from the captured {} at byte {at}",
                encoded.len(),
                frame.len()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} frames failed:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );
}

/// Guards the record batches inside captured Produce requests: every batch a client built must
/// parse, carry a valid CRC-32C, and (when uncompressed) hold exactly the records its header
/// counts, with keys and values present.
#[test]
fn produce_batches_from_clients_have_valid_crcs_and_records() {
    let mut batches = 0;
    let mut codecs = std::collections::BTreeSet::new();
    let mut transactional = false;
    for (path, frame) in fixtures() {
        let Ok(DecodedRequest {
            body: RequestBody::Produce(produce),
            ..
        }) = header::decode_request(frame)
        else {
            continue;
        };
        for partition in produce.topic_data.iter().flat_map(|t| &t.partition_data) {
            let records = partition.records.clone().unwrap_or_default();
            for batch in RecordBatches::new(records) {
                let batch = batch.unwrap_or_else(|e| panic!("{path}: bad batch: {e}"));
                batch.verify_crc().unwrap_or_else(|e| panic!("{path}: {e}"));
                let compression = batch.attributes().compression().unwrap();
                codecs.insert(compression.id());
                transactional |= batch.attributes().is_transactional();
                batches += 1;
                // Every codec the clients used must decompress, not only pass its CRC.
                let records: Vec<_> = batch
                    .records()
                    .unwrap_or_else(|e| panic!("{path}: records: {e}"))
                    .collect::<Result<_, _>>()
                    .unwrap_or_else(|e| panic!("{path}: bad record: {e}"));
                assert_eq!(records.len() as i32, batch.record_count(), "{path}");
                assert!(
                    records.iter().all(|r| r.value.is_some()),
                    "{path}: every captured record has a value"
                );
            }
        }
    }
    assert!(batches > 0, "no Produce batches among the fixtures");
    // none, gzip, snappy, lz4 and zstd were all captured.
    assert_eq!(codecs.len(), 5, "codecs seen: {codecs:?}");
    assert!(transactional, "no transactional batch among the fixtures");
}

/// The prefix of the topic and group names each client's scenario uses (see the client scripts).
fn scenario_prefix(path: &str) -> &'static str {
    if path.starts_with("kafka-python") {
        "kp"
    } else if path.starts_with("confluent-kafka") {
        "ck"
    } else {
        "kc"
    }
}

/// Guards against decoding bugs a round trip cannot see: a field read at the wrong place but
/// written back the same way would still re-encode identically, so the decoded values are
/// compared with what the client scripts actually sent.
#[test]
fn decoded_fields_match_what_the_clients_sent() {
    for (path, frame) in fixtures() {
        let decoded = header::decode_request(frame).unwrap();
        let prefix = scenario_prefix(&path);
        let client_id = decoded.header.client_id.clone().unwrap_or_default();
        let expected_client = if prefix == "kp" {
            "kafka-python"
        } else {
            "rdkafka"
        };
        assert!(
            client_id.starts_with(expected_client),
            "{path}: client id {client_id:?}"
        );
        match decoded.body {
            RequestBody::Produce(produce) => {
                for topic in &produce.topic_data {
                    assert_eq!(topic.name, format!("{prefix}-topic"), "{path}");
                    for partition in &topic.partition_data {
                        assert_eq!(partition.index, 0, "{path}");
                        let records = partition.records.clone().unwrap_or_default();
                        for batch in RecordBatches::new(records) {
                            let Ok(records) = batch.unwrap().records() else {
                                continue; // compressed: see the CRC test above
                            };
                            for record in records {
                                let record = record.unwrap();
                                let key = record.key.clone().unwrap_or_default();
                                let value = record.value.clone().unwrap_or_default();
                                assert!(key.starts_with(b"key-"), "{path}: key {key:?}");
                                assert!(
                                    value.starts_with(b"weir golden bytes "),
                                    "{path}: value {value:?}"
                                );
                                assert_eq!(record.headers.len(), 1, "{path}");
                                assert_eq!(&record.headers[0].key[..], b"h", "{path}");
                            }
                        }
                    }
                }
            }
            RequestBody::JoinGroup(join) => {
                assert_eq!(join.group_id, format!("{prefix}-group"), "{path}");
                assert_eq!(join.protocol_type, "consumer", "{path}");
                assert!(!join.protocols.is_empty(), "{path}");
            }
            RequestBody::SyncGroup(sync) => {
                assert_eq!(sync.group_id, format!("{prefix}-group"), "{path}");
                assert!(sync.generation_id > 0, "{path}");
            }
            RequestBody::OffsetCommit(commit) => {
                assert_eq!(commit.group_id, format!("{prefix}-group"), "{path}");
                let offsets: Vec<i64> = commit
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.committed_offset)
                    .collect();
                assert!(
                    offsets.iter().all(|o| (1..=50).contains(o)),
                    "{path}: offsets {offsets:?}"
                );
            }
            RequestBody::Fetch(fetch) => {
                let partitions: Vec<_> = fetch.topics.iter().flat_map(|t| &t.partitions).collect();
                assert!(!partitions.is_empty(), "{path}");
                assert!(
                    partitions
                        .iter()
                        .all(|p| p.partition == 0 && p.fetch_offset >= 0),
                    "{path}"
                );
            }
            _ => {}
        }
    }
}
