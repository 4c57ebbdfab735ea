//! Request and response headers, and which header version each API version uses.
//!
//! Requests carry header v1 (classic) or v2 (flexible: tagged fields); responses carry header
//! v0 or v1 alike. ApiVersions responses always use header v0: a client that does not yet know
//! the broker's versions must be able to read the answer.

use crate::api_key::ApiKey;
use crate::codec::{Ctx, int16, int32};
use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use crate::frame::write_frame;
use crate::message::Message;
use crate::messages::{RequestBody, RequestHeader, ResponseBody, ResponseHeader};
use bytes::{Bytes, BytesMut};

/// The request header version used by `api_key` at `version`.
pub fn request_header_version(api_key: ApiKey, version: i16) -> i16 {
    if api_key.flexible_min().is_some_and(|min| version >= min) {
        2
    } else {
        1
    }
}

/// The response header version used by `api_key` at `version`.
pub fn response_header_version(api_key: ApiKey, version: i16) -> i16 {
    if api_key == ApiKey::ApiVersions {
        0
    } else if api_key.flexible_min().is_some_and(|min| version >= min) {
        1
    } else {
        0
    }
}

/// The fields every request header version starts with, readable before the API is known:
/// enough to answer an unknown API or version with the right correlation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPrefix {
    /// The raw API key.
    pub api_key: i16,
    /// The requested version.
    pub api_version: i16,
    /// The correlation id to echo.
    pub correlation_id: i32,
}

/// Reads the header prefix of a request frame body.
pub fn peek_request(frame: &Bytes) -> Result<HeaderPrefix, DecodeError> {
    let ctx = Ctx::new(frame);
    let parse = |i| -> crate::codec::PResult<'_, HeaderPrefix> {
        let (i, api_key) = int16(i)?;
        let (i, api_version) = int16(i)?;
        let (i, correlation_id) = int32(i)?;
        Ok((
            i,
            HeaderPrefix {
                api_key,
                api_version,
                correlation_id,
            },
        ))
    };
    parse(frame).map(|(_, p)| p).map_err(|e| ctx.error(e))
}

/// A decoded request: header and body.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRequest {
    /// The request header.
    pub header: RequestHeader,
    /// The API the request is for.
    pub api_key: ApiKey,
    /// The request body.
    pub body: RequestBody,
    /// Bytes after the body that no field claims. Kafka ignores them, and so do we: librdkafka
    /// 2.16 sends Metadata v13 with the v8-v10 `IncludeClusterAuthorizedOperations` byte and an
    /// empty tagged field still in it.
    pub trailing_bytes: usize,
}

/// Decodes a whole request frame body (without the size prefix).
pub fn decode_request(frame: Bytes) -> Result<DecodedRequest, DecodeError> {
    let prefix = peek_request(&frame)?;
    let api_key = ApiKey::from_i16(prefix.api_key).ok_or(DecodeError {
        offset: 0,
        kind: DecodeErrorKind::UnknownApiKey(prefix.api_key),
    })?;
    if !api_key.valid_versions().contains(prefix.api_version) {
        return Err(DecodeError {
            offset: 2,
            kind: DecodeErrorKind::UnsupportedVersion {
                api_key: prefix.api_key,
                version: prefix.api_version,
            },
        });
    }
    let total = frame.len();
    let mut buf = frame;
    let header = RequestHeader::decode(
        &mut buf,
        request_header_version(api_key, prefix.api_version),
    )?;
    let header_len = total - buf.len();
    let body = RequestBody::decode(api_key, prefix.api_version, &mut buf).map_err(|mut e| {
        e.offset += header_len;
        e
    })?;
    Ok(DecodedRequest {
        header,
        api_key,
        body,
        trailing_bytes: buf.len(),
    })
}

/// Appends a request frame (size prefix, header, body).
pub fn encode_request(
    buf: &mut BytesMut,
    header: &RequestHeader,
    body: &RequestBody,
) -> Result<(), EncodeError> {
    let api_key = body.api_key();
    let version = header.request_api_version;
    write_frame(buf, |buf| {
        header.encode(buf, request_header_version(api_key, version))?;
        body.encode(buf, version)
    })
}

/// Appends a response frame (size prefix, header, body) for `api_key` at `version`.
pub fn encode_response(
    buf: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &impl Message,
) -> Result<(), EncodeError> {
    let header = ResponseHeader {
        correlation_id,
        ..ResponseHeader::default()
    };
    write_frame(buf, |buf| {
        header.encode(buf, response_header_version(api_key, version))?;
        body.encode(buf, version)
    })
}

/// Decodes a response frame body (without the size prefix) for a request of `api_key` at
/// `version`.
pub fn decode_response(
    frame: Bytes,
    api_key: ApiKey,
    version: i16,
) -> Result<(ResponseHeader, ResponseBody), DecodeError> {
    let total = frame.len();
    let mut buf = frame;
    let header = ResponseHeader::decode(&mut buf, response_header_version(api_key, version))?;
    let header_len = total - buf.len();
    let body = ResponseBody::decode(api_key, version, &mut buf).map_err(|mut e| {
        e.offset += header_len;
        e
    })?;
    if !buf.is_empty() {
        return Err(DecodeError {
            offset: total - buf.len(),
            kind: DecodeErrorKind::TrailingBytes(buf.len()),
        });
    }
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::ApiVersionsRequest;

    #[test]
    fn api_versions_response_always_uses_header_v0() {
        assert_eq!(response_header_version(ApiKey::ApiVersions, 4), 0);
        assert_eq!(response_header_version(ApiKey::Metadata, 12), 1);
        assert_eq!(response_header_version(ApiKey::Metadata, 8), 0);
        assert_eq!(request_header_version(ApiKey::ApiVersions, 3), 2);
        assert_eq!(request_header_version(ApiKey::ApiVersions, 2), 1);
    }

    #[test]
    fn request_round_trip_through_a_frame() {
        let header = RequestHeader {
            request_api_key: ApiKey::ApiVersions as i16,
            request_api_version: 3,
            correlation_id: 7,
            client_id: Some("weir-test".into()),
            ..RequestHeader::default()
        };
        let body = RequestBody::ApiVersions(Box::new(ApiVersionsRequest {
            client_software_name: "weir".into(),
            client_software_version: "0.1".into(),
            ..ApiVersionsRequest::default()
        }));
        let mut buf = BytesMut::new();
        encode_request(&mut buf, &header, &body).unwrap();
        let frame = crate::frame::split_frame(&mut buf, 1 << 20)
            .unwrap()
            .unwrap();
        let decoded = decode_request(frame).unwrap();
        assert_eq!(decoded.header, header);
        assert_eq!(decoded.body, body);
    }

    /// Guards the zero-copy promise: a Produce request's records stay a slice of the frame.
    #[test]
    fn produce_records_are_not_copied() {
        use crate::messages::ProduceRequest;
        use crate::messages::produce_request::{PartitionProduceData, TopicProduceData};
        let records = Bytes::from(vec![7u8; 4096]);
        let body = RequestBody::Produce(Box::new(ProduceRequest {
            acks: 1,
            topic_data: vec![TopicProduceData {
                name: "t".into(),
                partition_data: vec![PartitionProduceData {
                    index: 0,
                    records: Some(records),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }));
        let header = RequestHeader {
            request_api_key: 0,
            request_api_version: 9,
            ..RequestHeader::default()
        };
        let mut buf = BytesMut::new();
        encode_request(&mut buf, &header, &body).unwrap();
        let frame = buf.freeze().slice(4..);
        let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let RequestBody::Produce(produce) = decode_request(frame.clone()).unwrap().body else {
            panic!("not a produce request");
        };
        let decoded = produce.topic_data[0].partition_data[0]
            .records
            .clone()
            .unwrap();
        assert_eq!(decoded.len(), 4096);
        assert!(frame_range.contains(&(decoded.as_ptr() as usize)));
    }

    /// Guards the librdkafka 2.16 `list_topics` request: Metadata v13 with three bytes after
    /// the fields Kafka's schema defines must still decode (Kafka ignores them).
    #[test]
    fn trailing_bytes_after_a_request_are_ignored() {
        let frame = Bytes::from_static(&[
            0x00, 0x03, 0x00, 0x0d, 0x00, 0x00, 0x00, 0x03, 0x00, 0x07, b'r', b'd', b'k', b'a',
            b'f', b'k', b'a', 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        ]);
        let decoded = decode_request(frame).unwrap();
        assert_eq!(decoded.api_key, ApiKey::Metadata);
        assert_eq!(decoded.trailing_bytes, 3);
        let RequestBody::Metadata(metadata) = decoded.body else {
            panic!("not metadata");
        };
        assert_eq!(metadata.topics, None);
    }

    #[test]
    fn unknown_api_key_and_version_are_typed_errors() {
        let frame = Bytes::from_static(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            decode_request(frame).unwrap_err().kind,
            DecodeErrorKind::UnknownApiKey(0x7f00)
        );
        let frame = Bytes::from_static(&[0, 18, 0x10, 0, 0, 0, 0, 1]);
        assert!(matches!(
            decode_request(frame).unwrap_err().kind,
            DecodeErrorKind::UnsupportedVersion { api_key: 18, .. }
        ));
    }
}
