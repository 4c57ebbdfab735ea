//! Zig-zag encoded variable-length integers, as in protobuf and Kafka records.

use crate::{Error, Result};
use bytes::BufMut;

/// Decodes a zig-zag varint (at most 5 bytes) from the front of `input`, returning the value and
/// the number of bytes read.
#[inline]
pub fn read_varint(input: &[u8]) -> Result<(i32, usize)> {
    let (raw, n) = read_unsigned(input, 5)?;
    let raw = u32::try_from(raw).map_err(|_| Error::VarintOverflow)?;
    Ok((((raw >> 1) as i32) ^ -((raw & 1) as i32), n))
}

/// Decodes a zig-zag varlong (at most 10 bytes) from the front of `input`.
#[inline]
pub fn read_varlong(input: &[u8]) -> Result<(i64, usize)> {
    let (raw, n) = read_unsigned(input, 10)?;
    Ok((unzigzag(raw), n))
}

/// Decodes a zig-zag varint of at most `max_len` bytes from the front of `input`, returning the
/// value and the number of bytes read, or `None` when it is truncated, longer than `max_len` or
/// wider than 64 bits.
///
/// The allocation-free, error-free form of [`read_varlong`] for hot loops (weir-log checks every
/// appended record with it): it inlines across crates and takes one branch for the one- and
/// two-byte varints most record lengths, deltas and key lengths use. With `max_len` 5 the value
/// may exceed `i32` (35 bits); callers that need an `i32` use [`read_varint`].
#[inline]
pub fn read_zigzag(input: &[u8], max_len: usize) -> Option<(i64, usize)> {
    let (raw, n) = unsigned(input, max_len)?;
    Some((unzigzag(raw), n))
}

/// Decodes an unsigned varint of at most `max_len` bytes.
#[inline]
pub fn read_unsigned(input: &[u8], max_len: usize) -> Result<(u64, usize)> {
    unsigned(input, max_len).ok_or_else(|| unsigned_error(input, max_len))
}

/// The decoder [`read_unsigned`] and [`read_zigzag`] share: `None` for any malformed input,
/// which [`unsigned_error`] then explains.
#[inline]
fn unsigned(input: &[u8], max_len: usize) -> Option<(u64, usize)> {
    match *input {
        [b0, ..] if b0 < 0x80 && max_len >= 1 => return Some((u64::from(b0), 1)),
        [b0, b1, ..] if b1 < 0x80 && max_len >= 2 => {
            return Some((u64::from(b0 & 0x7f) | u64::from(b1) << 7, 2));
        }
        _ => {}
    }
    let mut value: u64 = 0;
    for (i, byte) in input.iter().take(max_len).enumerate() {
        let bits = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        // The tenth byte of a varlong may only contribute one bit.
        if shift == 63 && bits > 1 {
            return None;
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Why [`unsigned`] refused `input`.
#[cold]
fn unsigned_error(input: &[u8], max_len: usize) -> Error {
    // A tenth byte with more than one bit is reached only after nine continuation bytes, so it
    // is the reason whenever it is present.
    let tenth_overflows = max_len >= 10 && input.get(9).is_some_and(|byte| byte & 0x7f > 1);
    if !tenth_overflows && input.len() < max_len {
        Error::Truncated {
            needed: input.len() + 1,
            available: input.len(),
        }
    } else {
        Error::VarintOverflow
    }
}

/// The signed value of a zig-zag encoded one.
#[inline]
fn unzigzag(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

/// Appends a zig-zag varint.
pub fn put_varint(buf: &mut impl BufMut, value: i32) {
    put_unsigned(buf, u64::from(((value << 1) ^ (value >> 31)) as u32));
}

/// Appends a zig-zag varlong.
pub fn put_varlong(buf: &mut impl BufMut, value: i64) {
    put_unsigned(buf, ((value << 1) ^ (value >> 63)) as u64);
}

/// Appends an unsigned varint.
pub fn put_unsigned(buf: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// Number of bytes [`put_varint`] writes for `value`.
pub fn varint_len(value: i32) -> usize {
    unsigned_len(u64::from(((value << 1) ^ (value >> 31)) as u32))
}

/// Number of bytes [`put_varlong`] writes for `value`.
pub fn varlong_len(value: i64) -> usize {
    unsigned_len(((value << 1) ^ (value >> 63)) as u64)
}

fn unsigned_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let mut buf = Vec::new();
        put_varint(&mut buf, -1);
        put_varint(&mut buf, 300);
        assert_eq!(buf, [0x01, 0xd8, 0x04]);
        assert_eq!(read_varint(&buf).unwrap(), (-1, 1));
        assert_eq!(read_varint(&buf[1..]).unwrap(), (300, 2));
    }

    #[test]
    fn overflow_and_truncation_are_errors() {
        assert_eq!(read_varint(&[0xff; 6]), Err(Error::VarintOverflow));
        assert_eq!(read_varlong(&[0xff; 11]), Err(Error::VarintOverflow));
        assert!(matches!(read_varint(&[0x80]), Err(Error::Truncated { .. })));
        // A five-byte varint whose value does not fit 32 bits.
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(Error::VarintOverflow)
        );
    }

    #[test]
    fn read_zigzag_matches_read_varlong() {
        for value in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -301,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut buf = Vec::new();
            put_varlong(&mut buf, value);
            assert_eq!(read_zigzag(&buf, 10), Some((value, buf.len())));
        }
        assert_eq!(read_zigzag(&[0x80, 0x80], 5), None);
        assert_eq!(read_zigzag(&[0x80, 0x01], 1), None);
        assert_eq!(read_zigzag(&[0x80; 5], 5), None);
    }

    /// Guards the error kinds `read_unsigned` reported before it shared its decoder with
    /// `read_zigzag`: overflow of the tenth byte wins over a short buffer.
    #[test]
    fn error_kinds_are_kept() {
        let mut tenth = [0x80; 10];
        tenth[9] = 0x02;
        assert_eq!(read_unsigned(&tenth, 10), Err(Error::VarintOverflow));
        assert_eq!(
            read_unsigned(&tenth[..9], 10),
            Err(Error::Truncated {
                needed: 10,
                available: 9
            })
        );
        assert_eq!(
            read_unsigned(&[], 5),
            Err(Error::Truncated {
                needed: 1,
                available: 0
            })
        );
        assert_eq!(read_unsigned(&[0x80; 5], 5), Err(Error::VarintOverflow));
        // The largest varlong: nine continuation bytes and a tenth carrying one bit.
        let mut max = [0xff; 10];
        max[9] = 0x01;
        assert_eq!(read_unsigned(&max, 10), Ok((u64::MAX, 10)));
    }

    proptest! {
        #[test]
        fn read_zigzag_agrees_with_read_varlong(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            prop_assert_eq!(read_zigzag(&bytes, 10), read_varlong(&bytes).ok());
        }

        #[test]
        fn varint_round_trip(v: i32) {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            prop_assert_eq!(buf.len(), varint_len(v));
            prop_assert_eq!(read_varint(&buf).unwrap(), (v, buf.len()));
        }

        #[test]
        fn varlong_round_trip(v: i64) {
            let mut buf = Vec::new();
            put_varlong(&mut buf, v);
            prop_assert_eq!(buf.len(), varlong_len(v));
            prop_assert_eq!(read_varlong(&buf).unwrap(), (v, buf.len()));
        }
    }
}
