//! Any bytes as a request frame body: decoding must never panic, and whatever decodes must
//! re-encode and decode to the same request. The same bytes are also decoded as a response
//! body for the API and version named by their first four bytes.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use weir_protocol::header::{decode_request, decode_response, encode_request};
use weir_protocol::ApiKey;

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    if let Ok(request) = decode_request(frame.clone()) {
        let mut buf = BytesMut::new();
        if encode_request(&mut buf, &request.header, &request.body).is_ok() {
            let again = decode_request(buf.freeze().slice(4..));
            let again = again.as_ref().ok().map(|r| (&r.header, &r.body, r.trailing_bytes));
            assert_eq!(again, Some((&request.header, &request.body, 0)));
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
