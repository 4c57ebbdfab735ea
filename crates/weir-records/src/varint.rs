//! Zig-zag encoded variable-length integers, as in protobuf and Kafka records.

use crate::{Error, Result};
use bytes::BufMut;

/// Decodes a zig-zag varint (at most 5 bytes) from the front of `input`, returning the value and
/// the number of bytes read.
pub fn read_varint(input: &[u8]) -> Result<(i32, usize)> {
    let (raw, n) = read_unsigned(input, 5)?;
    let raw = u32::try_from(raw).map_err(|_| Error::VarintOverflow)?;
    Ok((((raw >> 1) as i32) ^ -((raw & 1) as i32), n))
}

/// Decodes a zig-zag varlong (at most 10 bytes) from the front of `input`.
pub fn read_varlong(input: &[u8]) -> Result<(i64, usize)> {
    let (raw, n) = read_unsigned(input, 10)?;
    Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), n))
}

/// Decodes an unsigned varint of at most `max_len` bytes.
pub fn read_unsigned(input: &[u8], max_len: usize) -> Result<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in input.iter().take(max_len).enumerate() {
        let bits = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        // The tenth byte of a varlong may only contribute one bit.
        if shift == 63 && bits > 1 {
            return Err(Error::VarintOverflow);
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if input.len() < max_len {
        Err(Error::Truncated {
            needed: input.len() + 1,
            available: input.len(),
        })
    } else {
        Err(Error::VarintOverflow)
    }
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

    proptest! {
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
