//! The seed corpus of the `decode_request` fuzz target (`fuzz/seeds/decode_request/`), checked
//! the way the target checks every input: a request that decodes re-encodes to bytes that decode
//! to the same request (NaN-aware) and encode to the same bytes again.
//!
//! `WEIR_WRITE_SEEDS=1 cargo test -p weir-protocol --test fuzz_seeds` rewrites the seeds made
//! here; a plain run checks that they are unchanged.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "fixture helpers outside #[test] fail loudly"
)]

use bytes::{Bytes, BytesMut};
use std::path::PathBuf;
use weir_protocol::header::{DecodedRequest, decode_request, encode_request};
use weir_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use weir_protocol::messages::{AlterClientQuotasRequest, RequestBody, RequestHeader};

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/decode_request")
}

/// The frame `request` encodes to, without its size prefix.
fn encode(request: &DecodedRequest) -> Bytes {
    let mut buf = BytesMut::new();
    encode_request(&mut buf, &request.header, &request.body).unwrap();
    buf.freeze().slice(4..)
}

/// The fuzz target's round-trip check.
fn assert_round_trips(name: &str, frame: Bytes) {
    let request = decode_request(frame).unwrap_or_else(|e| panic!("{name}: {e}"));
    let encoded = encode(&request);
    let again = decode_request(encoded.clone()).unwrap();
    assert_eq!(again.trailing_bytes, 0, "{name}");
    assert_eq!(encode(&again), encoded, "{name}");
    assert_eq!(
        format!("{:?}", (&again.header, &again.body)),
        format!("{:?}", (&request.header, &request.body)),
        "{name}"
    );
}

/// AlterClientQuotas v0 with one op whose value is a float64 NaN (`7ff8000000000000`).
fn alter_client_quotas_nan() -> Bytes {
    let body = AlterClientQuotasRequest {
        entries: vec![EntryData {
            entity: vec![EntityData {
                entity_type: "client-id".into(),
                entity_name: Some("weir".into()),
                ..Default::default()
            }],
            ops: vec![OpData {
                key: "producer_byte_rate".into(),
                value: f64::NAN,
                remove: false,
                ..Default::default()
            }],
            ..Default::default()
        }],
        validate_only: false,
        ..Default::default()
    };
    let header = RequestHeader {
        request_api_key: 49,
        request_api_version: 0,
        correlation_id: 1,
        client_id: Some("fuzz".into()),
        ..Default::default()
    };
    let mut buf = BytesMut::new();
    encode_request(&mut buf, &header, &RequestBody::from(body)).unwrap();
    buf.freeze().slice(4..)
}

/// Issue 15: the fuzz target compared decoded requests with `==`, and a NaN never equals
/// itself, so this valid request stopped the fuzzer as a crash.
#[test]
fn a_nan_quota_round_trips() {
    let frame = alter_client_quotas_nan();
    let nan = 0x7ff8_0000_0000_0000_u64.to_be_bytes();
    assert!(frame.windows(8).any(|w| w == nan), "{frame:?}");
    let decoded = decode_request(frame.clone()).unwrap();
    // What the old check did: a valid request looked broken.
    assert_ne!(decode_request(encode(&decoded)).unwrap().body, decoded.body);
    assert_round_trips("AlterClientQuotas NaN", frame.clone());

    let path = seed_dir().join("AlterClientQuotas-v0-nan.bin");
    if std::env::var_os("WEIR_WRITE_SEEDS").is_some() {
        std::fs::write(&path, &frame).unwrap();
    }
    assert_eq!(std::fs::read(&path).unwrap(), frame.to_vec(), "{path:?}");
}

#[test]
fn every_request_seed_round_trips() {
    let mut seen = 0;
    for entry in std::fs::read_dir(seed_dir()).unwrap() {
        let path = entry.unwrap().path();
        let frame = Bytes::from(std::fs::read(&path).unwrap());
        assert_round_trips(&path.display().to_string(), frame);
        seen += 1;
    }
    assert!(seen > 20, "only {seen} seeds");
}
