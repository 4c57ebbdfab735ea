//! Hostile requests get a typed error without a large allocation: a 2^31-1 size prefix with a
//! short body, negative lengths, an overflowing varint, and array counts far larger than the
//! bytes left. Each case is measured with a counting allocator; a decoder that trusted a
//! length would allocate gigabytes.
//!
//! One test in this binary, so no other test thread allocates while it measures.

use bytes::{Bytes, BytesMut};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use weir_protocol::frame::{DEFAULT_MAX_FRAME_SIZE, split_frame};
use weir_protocol::header::decode_request;
use weir_protocol::{DecodeError, DecodeErrorKind};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Generous bound for a rejected input: the decoder's own small bookkeeping, never a buffer
/// sized from the input.
const SMALL: usize = 64 * 1024;

fn allocated_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let region = Region::new(GLOBAL);
    let out = f();
    let stats = region.change();
    (
        out,
        stats.bytes_allocated + stats.bytes_reallocated.max(0) as usize,
    )
}

/// A request header v2 (flexible) for `api_key`/`version`, correlation id 1, null client id.
fn header(api_key: i16, version: i16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&api_key.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

fn decode(frame: Vec<u8>) -> (Result<(), DecodeError>, usize) {
    let frame = Bytes::from(frame);
    allocated_during(|| decode_request(frame).map(|_| ()))
}

#[test]
fn hostile_requests_are_typed_errors_without_large_allocations() {
    // A 2^31-1 size prefix with a short body: refused before anything is reserved.
    let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 0, 18, 0, 3][..]);
    let (result, bytes) = allocated_during(|| split_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE));
    assert!(matches!(
        result.unwrap_err().kind,
        DecodeErrorKind::FrameTooLarge { .. }
    ));
    assert!(bytes < SMALL, "allocated {bytes} bytes");

    // Metadata v1 (classic encoding): a topics array count of i32::MAX with 4 bytes left.
    let mut frame = header(3, 1);
    frame.extend_from_slice(&i32::MAX.to_be_bytes());
    frame.extend_from_slice(&[0, 1, b'a', 0]);
    let (result, bytes) = decode(frame);
    assert!(matches!(
        result.unwrap_err().kind,
        DecodeErrorKind::InvalidLength { .. }
    ));
    assert!(bytes < SMALL, "allocated {bytes} bytes");

    // Produce v9 (flexible): a compact array count of 2^32-2 in a varint.
    let mut frame = header(0, 9);
    frame.push(0); // header tagged fields
    frame.push(0); // null transactional id
    frame.extend_from_slice(&1i16.to_be_bytes()); // acks
    frame.extend_from_slice(&1000i32.to_be_bytes()); // timeout
    frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // topic count
    let (result, bytes) = decode(frame);
    assert!(matches!(
        result.unwrap_err().kind,
        DecodeErrorKind::InvalidLength { .. }
    ));
    assert!(bytes < SMALL, "allocated {bytes} bytes");

    // An overflowing varint where the Produce topic count should be.
    let mut frame = header(0, 9);
    frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 3, 232]);
    frame.extend_from_slice(&[0xff; 8]);
    let (result, _) = decode(frame);
    assert_eq!(result.unwrap_err().kind, DecodeErrorKind::VarintOverflow);

    // A negative string length (other than -1) in a classic request.
    let mut frame = header(3, 1);
    frame.extend_from_slice(&1i32.to_be_bytes());
    frame.extend_from_slice(&(-7i16).to_be_bytes());
    let (result, _) = decode(frame);
    assert!(matches!(
        result.unwrap_err().kind,
        DecodeErrorKind::InvalidLength { length: -7, .. }
    ));

    // Produce v3 with a records field claiming 1 GiB.
    let mut frame = header(0, 3);
    frame.extend_from_slice(&(-1i16).to_be_bytes()); // null transactional id
    frame.extend_from_slice(&1i16.to_be_bytes());
    frame.extend_from_slice(&1000i32.to_be_bytes());
    frame.extend_from_slice(&1i32.to_be_bytes()); // one topic
    frame.extend_from_slice(&[0, 1, b't']);
    frame.extend_from_slice(&1i32.to_be_bytes()); // one partition
    frame.extend_from_slice(&0i32.to_be_bytes());
    frame.extend_from_slice(&(1i32 << 30).to_be_bytes());
    frame.extend_from_slice(&[0; 16]);
    let (result, bytes) = decode(frame);
    let err = result.unwrap_err();
    assert!(
        matches!(err.kind, DecodeErrorKind::InvalidLength { .. }),
        "{err}"
    );
    assert!(bytes < SMALL, "allocated {bytes} bytes");
}
