//! Framing: every request and response is a 4-byte big-endian size followed by that many
//! bytes. The size is checked against a limit before the body is read or allocated.

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Kafka's default `socket.request.max.bytes`: 100 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// The least a partly arrived frame's buffer grows by at a time.
const MIN_GROWTH: usize = 64 * 1024;

/// Length of the size prefix.
pub const SIZE_PREFIX_LEN: usize = 4;

/// Validates a size prefix against `limit`.
pub fn check_size(prefix: [u8; 4], limit: usize) -> Result<usize, DecodeError> {
    let size = i32::from_be_bytes(prefix);
    match usize::try_from(size) {
        Ok(n) if n <= limit => Ok(n),
        _ => Err(DecodeError {
            offset: 0,
            kind: DecodeErrorKind::FrameTooLarge {
                size: i64::from(size),
                limit,
            },
        }),
    }
}

/// Takes one complete frame body off the front of `buf`, if it has arrived.
///
/// Returns `Ok(None)` while more bytes are needed. Room is reserved as the body arrives (at
/// most doubling what has arrived, never past the frame), not from the announced size: a
/// peer that announces 100 MiB and sends a few bytes costs a few KiB. An oversized or
/// negative size is an error before anything is allocated.
pub fn split_frame(buf: &mut BytesMut, limit: usize) -> Result<Option<Bytes>, DecodeError> {
    let Some(prefix) = buf.first_chunk::<SIZE_PREFIX_LEN>() else {
        return Ok(None);
    };
    let size = check_size(*prefix, limit)?;
    let total = SIZE_PREFIX_LEN + size;
    if buf.len() < total {
        let missing = total - buf.len();
        if buf.capacity() - buf.len() < missing {
            buf.reserve(missing.min(buf.len().max(MIN_GROWTH)));
        }
        return Ok(None);
    }
    buf.advance(SIZE_PREFIX_LEN);
    Ok(Some(buf.split_to(size).freeze()))
}

/// Appends a frame whose body `write` produces, patching the size prefix afterwards.
pub fn write_frame(
    buf: &mut BytesMut,
    write: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = buf.len();
    buf.put_i32(0);
    write(buf)?;
    let size = buf.len() - start - SIZE_PREFIX_LEN;
    let size = i32::try_from(size).map_err(|_| EncodeError::TooLong(size))?;
    if let Some(prefix) = buf.get_mut(start..start + SIZE_PREFIX_LEN) {
        prefix.copy_from_slice(&size.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_prefix_is_rejected_before_the_body_arrives() {
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 1, 2][..]);
        let err = split_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE).unwrap_err();
        assert!(matches!(
            err.kind,
            DecodeErrorKind::FrameTooLarge {
                size: 0x7fff_ffff,
                ..
            }
        ));
        // Nothing was reserved for the claimed 2 GiB body.
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn room_grows_with_the_bytes_that_arrive_not_the_announced_size() {
        // 100 MiB announced, 10 bytes sent.
        let mut buf = BytesMut::from(&[0x06, 0x40, 0x00, 0x00, 1, 2, 3, 4, 5, 6][..]);
        assert_eq!(split_frame(&mut buf, DEFAULT_MAX_FRAME_SIZE).unwrap(), None);
        assert!(buf.capacity() <= 2 * MIN_GROWTH, "{}", buf.capacity());
        // A frame that has nearly arrived gets room for the rest, no more.
        let mut buf = BytesMut::from(&[0, 0, 0, 100][..]);
        buf.extend_from_slice(&[0; 90]);
        assert_eq!(split_frame(&mut buf, 1024).unwrap(), None);
        assert!(buf.capacity() - buf.len() >= 10);
    }

    #[test]
    fn negative_prefix_is_rejected() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert!(split_frame(&mut buf, 1024).is_err());
    }

    #[test]
    fn frames_split_as_they_complete() {
        let mut buf = BytesMut::new();
        write_frame(&mut buf, |b| {
            b.put_slice(b"hello");
            Ok(())
        })
        .unwrap();
        let mut partial = BytesMut::from(&buf[..6]);
        assert_eq!(split_frame(&mut partial, 1024).unwrap(), None);
        partial.extend_from_slice(&buf[6..]);
        partial.extend_from_slice(&[0, 0, 0]);
        assert_eq!(
            split_frame(&mut partial, 1024).unwrap().unwrap(),
            &b"hello"[..]
        );
        assert_eq!(split_frame(&mut partial, 1024).unwrap(), None);
        assert_eq!(partial.len(), 3);
    }
}
