//! Any bytes as a request frame body: decoding must never panic, and whatever decodes must
//! re-encode to bytes that decode to the same request and encode to the same bytes again. The
//! same bytes are also decoded as a response body for the API and version named by their first
//! four bytes.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use weir_protocol::ApiKey;
use weir_protocol::header::{DecodedRequest, decode_request, decode_response, encode_request};

/// The frame `request` encodes to, without its size prefix.
fn encode(request: &DecodedRequest) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    encode_request(&mut buf, &request.header, &request.body).ok()?;
    Some(buf.freeze().slice(4..))
}

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    if let Ok(request) = decode_request(frame.clone()) {
        if let Some(encoded) = encode(&request) {
            let again = decode_request(encoded.clone());
            let again = match again {
                Ok(again) if again.trailing_bytes == 0 => again,
                other => panic!("re-encoded request does not decode cleanly: {other:?}"),
            };
            // Re-encoding is stable to the bit (this also covers a float64 NaN, and its
            // payload, which `==` can never confirm).
            assert_eq!(encode(&again).as_ref(), Some(&encoded));
            // And every field survived. NaN != NaN, so where `==` fails the values are
            // compared through their Debug text, in which a NaN reads the same as itself.
            if (&again.header, &again.body) != (&request.header, &request.body) {
                assert_eq!(
                    format!("{:?}", (&again.header, &again.body)),
                    format!("{:?}", (&request.header, &request.body))
                );
            }
        }
    }
    if let (Some(key), Some(version)) = (data.get(0..2), data.get(2..4)) {
        let key = i16::from_be_bytes([key[0], key[1]]);
        let version = i16::from_be_bytes([version[0], version[1]]);
        if let Some(api_key) = ApiKey::from_i16(key) {
            let _ = decode_response(frame.slice(4..), api_key, version);
        }
    }
});
