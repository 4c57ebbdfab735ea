//! Wire primitives shared by the generated messages: nom parsers for decoding, `BufMut`
//! writers for encoding.
//!
//! Every parser works on a byte slice that is a sub-slice of one `Bytes` buffer (held by
//! [`Ctx`]), so byte and record fields are returned as zero-copy `Bytes`. Every length and
//! count is checked against the bytes remaining before anything is allocated.

use crate::error::{DecodeError, DecodeErrorKind, EncodeError};
use bytes::{BufMut, Bytes, BytesMut};
use nom::Parser;
use nom::bytes::complete::take;
use nom::number::complete as num;

/// The nom error type of the codec: where in the buffer decoding failed and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// Address of the input position where the error was detected; turned into a byte offset
    /// relative to the decoded buffer by [`Ctx::error`].
    at: usize,
    kind: DecodeErrorKind,
}

impl WireError {
    /// An error of `kind` at the start of `input`.
    pub fn new(input: &[u8], kind: DecodeErrorKind) -> Self {
        Self {
            at: input.as_ptr() as usize,
            kind,
        }
    }
}

impl nom::error::ParseError<&[u8]> for WireError {
    fn from_error_kind(input: &[u8], _kind: nom::error::ErrorKind) -> Self {
        // The only way the complete parsers used here fail is by running out of input.
        Self::new(input, DecodeErrorKind::UnexpectedEof)
    }

    fn append(_input: &[u8], _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

/// Result of a codec parser.
pub type PResult<'a, T> = nom::IResult<&'a [u8], T, WireError>;

/// Fails a parser with `kind` at `input`.
pub fn fail<T>(input: &[u8], kind: DecodeErrorKind) -> PResult<'_, T> {
    Err(nom::Err::Error(WireError::new(input, kind)))
}

/// The buffer being decoded; lets parsers return zero-copy `Bytes` for sub-slices.
#[derive(Debug)]
pub struct Ctx<'b> {
    src: &'b Bytes,
}

impl<'b> Ctx<'b> {
    /// A context over `src`.
    pub fn new(src: &'b Bytes) -> Self {
        Self { src }
    }

    /// The `Bytes` for `sub`, which must lie inside the buffer; copies as a fallback otherwise.
    pub fn slice(&self, sub: &[u8]) -> Bytes {
        let start = (sub.as_ptr() as usize).wrapping_sub(self.src.as_ptr() as usize);
        match start.checked_add(sub.len()) {
            Some(end) if end <= self.src.len() => self.src.slice(start..end),
            _ => Bytes::copy_from_slice(sub),
        }
    }

    /// Byte offset of `rest` within the buffer.
    pub fn offset_of(&self, rest: &[u8]) -> usize {
        (rest.as_ptr() as usize)
            .wrapping_sub(self.src.as_ptr() as usize)
            .min(self.src.len())
    }

    /// Converts a parser error into a [`DecodeError`] with an offset into the buffer.
    pub fn error(&self, err: nom::Err<WireError>) -> DecodeError {
        match err {
            nom::Err::Error(e) | nom::Err::Failure(e) => DecodeError {
                offset: e
                    .at
                    .wrapping_sub(self.src.as_ptr() as usize)
                    .min(self.src.len()),
                kind: e.kind,
            },
            nom::Err::Incomplete(_) => DecodeError {
                offset: self.src.len(),
                kind: DecodeErrorKind::UnexpectedEof,
            },
        }
    }
}

/// A 16-byte UUID (Kafka topic ids, directory ids).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID, Kafka's "no id".
    pub const ZERO: Uuid = Uuid([0; 16]);
}

impl std::fmt::Debug for Uuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Tagged fields this version of the codec does not know, kept so they survive a round trip.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnknownTaggedFields(pub Vec<(u32, Bytes)>);

impl UnknownTaggedFields {
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding.

/// Reads an int8.
pub fn int8(i: &[u8]) -> PResult<'_, i8> {
    num::be_i8(i)
}
/// Reads a big-endian int16.
pub fn int16(i: &[u8]) -> PResult<'_, i16> {
    num::be_i16(i)
}
/// Reads a big-endian uint16.
pub fn uint16(i: &[u8]) -> PResult<'_, u16> {
    num::be_u16(i)
}
/// Reads a big-endian int32.
pub fn int32(i: &[u8]) -> PResult<'_, i32> {
    num::be_i32(i)
}
/// Reads a big-endian uint32.
pub fn uint32(i: &[u8]) -> PResult<'_, u32> {
    num::be_u32(i)
}
/// Reads a big-endian int64.
pub fn int64(i: &[u8]) -> PResult<'_, i64> {
    num::be_i64(i)
}
/// Reads a big-endian IEEE 754 float64.
pub fn float64(i: &[u8]) -> PResult<'_, f64> {
    num::be_f64(i)
}
/// Reads a boolean: any non-zero byte is true, as Kafka reads it.
pub fn boolean(i: &[u8]) -> PResult<'_, bool> {
    let (i, b) = num::be_u8(i)?;
    Ok((i, b != 0))
}
/// Reads a UUID.
pub fn uuid(i: &[u8]) -> PResult<'_, Uuid> {
    let (rest, raw) = take(16usize).parse(i)?;
    let mut id = [0u8; 16];
    id.copy_from_slice(raw);
    Ok((rest, Uuid(id)))
}

/// Reads an unsigned varint of at most 5 bytes (a u32).
pub fn uvarint(i: &[u8]) -> PResult<'_, u32> {
    let mut value: u32 = 0;
    for (n, byte) in i.iter().take(5).enumerate() {
        let bits = u32::from(byte & 0x7f);
        // The fifth byte may only carry the top four bits.
        if n == 4 && bits > 0x0f {
            return fail(i, DecodeErrorKind::VarintOverflow);
        }
        value |= bits << (7 * n);
        if byte & 0x80 == 0 {
            let (rest, _) = take(n + 1).parse(i)?;
            return Ok((rest, value));
        }
    }
    if i.len() < 5 {
        fail(i, DecodeErrorKind::UnexpectedEof)
    } else {
        fail(i, DecodeErrorKind::VarintOverflow)
    }
}

/// Reads a length prefix: `None` for null. Compact lengths are an unsigned varint holding
/// length + 1; classic ones are int16 for strings and int32 otherwise. The length is checked
/// against the remaining input scaled by `unit` (the minimum encoded size of one item).
fn length(i: &[u8], compact: bool, short: bool, unit: usize) -> PResult<'_, Option<usize>> {
    let start = i;
    let (i, raw) = if compact {
        let (i, n) = uvarint(i)?;
        (i, i64::from(n) - 1)
    } else if short {
        let (i, n) = int16(i)?;
        (i, i64::from(n))
    } else {
        let (i, n) = int32(i)?;
        (i, i64::from(n))
    };
    if raw == -1 {
        return Ok((i, None));
    }
    let fits = usize::try_from(raw)
        .ok()
        .filter(|n| n.saturating_mul(unit.max(1)) <= i.len());
    match fits {
        Some(n) => Ok((i, Some(n))),
        None => fail(
            start,
            DecodeErrorKind::InvalidLength {
                length: raw,
                remaining: i.len(),
            },
        ),
    }
}

/// The result of reading a null: fine when `nullable`, an error otherwise.
fn null<'a, T>(start: &'a [u8], rest: &'a [u8], nullable: bool) -> PResult<'a, Option<T>> {
    if nullable {
        Ok((rest, None))
    } else {
        fail(start, DecodeErrorKind::NullNotAllowed)
    }
}

/// Reads a nullable string; a null is an error unless `nullable`.
pub fn nullable_string(i: &[u8], compact: bool, nullable: bool) -> PResult<'_, Option<String>> {
    let start = i;
    let (i, len) = length(i, compact, !compact, 1)?;
    let Some(len) = len else {
        return null(start, i, nullable);
    };
    let (i, raw) = take(len).parse(i)?;
    match std::str::from_utf8(raw) {
        Ok(s) => Ok((i, Some(s.to_owned()))),
        Err(_) => fail(start, DecodeErrorKind::InvalidUtf8),
    }
}

/// Reads a non-nullable string.
pub fn string(i: &[u8], compact: bool) -> PResult<'_, String> {
    let (i, s) = nullable_string(i, compact, false)?;
    Ok((i, s.unwrap_or_default()))
}

/// Reads nullable bytes as a zero-copy slice of the buffer.
pub fn nullable_bytes<'a>(
    ctx: &Ctx<'_>,
    i: &'a [u8],
    compact: bool,
    nullable: bool,
) -> PResult<'a, Option<Bytes>> {
    let start = i;
    let (i, len) = length(i, compact, false, 1)?;
    let Some(len) = len else {
        return null(start, i, nullable);
    };
    let (i, raw) = take(len).parse(i)?;
    Ok((i, Some(ctx.slice(raw))))
}

/// Reads non-nullable bytes.
pub fn bytes<'a>(ctx: &Ctx<'_>, i: &'a [u8], compact: bool) -> PResult<'a, Bytes> {
    let (i, b) = nullable_bytes(ctx, i, compact, false)?;
    Ok((i, b.unwrap_or_default()))
}

/// Reads a nullable array whose items each take at least `min_item_size` bytes.
pub fn nullable_array<'a, T>(
    i: &'a [u8],
    compact: bool,
    nullable: bool,
    min_item_size: usize,
    mut item: impl FnMut(&'a [u8]) -> PResult<'a, T>,
) -> PResult<'a, Option<Vec<T>>> {
    let start = i;
    let (mut i, len) = length(i, compact, false, min_item_size)?;
    let Some(len) = len else {
        return null(start, i, nullable);
    };
    let mut items = Vec::with_capacity(len);
    for _ in 0..len {
        let (rest, value) = item(i)?;
        i = rest;
        items.push(value);
    }
    Ok((i, Some(items)))
}

/// Reads a non-nullable array.
pub fn array<'a, T>(
    i: &'a [u8],
    compact: bool,
    min_item_size: usize,
    item: impl FnMut(&'a [u8]) -> PResult<'a, T>,
) -> PResult<'a, Vec<T>> {
    let (i, items) = nullable_array(i, compact, false, min_item_size, item)?;
    Ok((i, items.unwrap_or_default()))
}

/// Reads a nullable struct: an int8 marker (-1 null, 1 present) then the struct.
pub fn nullable_struct<'a, T>(
    i: &'a [u8],
    nullable: bool,
    item: impl FnOnce(&'a [u8]) -> PResult<'a, T>,
) -> PResult<'a, Option<T>> {
    if !nullable {
        let (i, value) = item(i)?;
        return Ok((i, Some(value)));
    }
    let start = i;
    let (i, marker) = int8(i)?;
    match marker {
        -1 => Ok((i, None)),
        1 => {
            let (i, value) = item(i)?;
            Ok((i, Some(value)))
        }
        other => fail(start, DecodeErrorKind::InvalidStructMarker(other)),
    }
}

/// Reads the tagged-field section: a count, then (tag, size, data) triples in ascending tag
/// order. Returns each field's data for the caller to decode or keep as unknown.
pub fn tagged_fields(i: &[u8]) -> PResult<'_, Vec<(u32, &[u8])>> {
    let start = i;
    let (mut i, count) = uvarint(i)?;
    // Each tagged field takes at least two bytes (tag and size).
    let count = count as usize;
    if count.saturating_mul(2) > i.len() {
        return fail(
            start,
            DecodeErrorKind::InvalidLength {
                length: count as i64,
                remaining: i.len(),
            },
        );
    }
    let mut fields = Vec::with_capacity(count);
    let mut previous: Option<u32> = None;
    for _ in 0..count {
        let field_start = i;
        let (rest, tag) = uvarint(i)?;
        if previous.is_some_and(|p| p >= tag) {
            return fail(field_start, DecodeErrorKind::InvalidTaggedField { tag });
        }
        previous = Some(tag);
        let (rest, size) = uvarint(rest)?;
        if size as usize > rest.len() {
            return fail(field_start, DecodeErrorKind::InvalidTaggedField { tag });
        }
        let (rest, data) = take(size as usize).parse(rest)?;
        fields.push((tag, data));
        i = rest;
    }
    Ok((i, fields))
}

/// Decodes one known tagged field, which must consume its data exactly.
pub fn tagged_value<'a, T>(
    tag: u32,
    data: &'a [u8],
    parse: impl FnOnce(&'a [u8]) -> PResult<'a, T>,
) -> Result<T, nom::Err<WireError>> {
    let (rest, value) = parse(data)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(nom::Err::Error(WireError::new(
            rest,
            DecodeErrorKind::InvalidTaggedField { tag },
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding.

/// Writes an int8.
pub fn put_int8(buf: &mut BytesMut, v: i8) -> Result<(), EncodeError> {
    buf.put_i8(v);
    Ok(())
}
/// Writes an int16.
pub fn put_int16(buf: &mut BytesMut, v: i16) -> Result<(), EncodeError> {
    buf.put_i16(v);
    Ok(())
}
/// Writes a uint16.
pub fn put_uint16(buf: &mut BytesMut, v: u16) -> Result<(), EncodeError> {
    buf.put_u16(v);
    Ok(())
}
/// Writes an int32.
pub fn put_int32(buf: &mut BytesMut, v: i32) -> Result<(), EncodeError> {
    buf.put_i32(v);
    Ok(())
}
/// Writes a uint32.
pub fn put_uint32(buf: &mut BytesMut, v: u32) -> Result<(), EncodeError> {
    buf.put_u32(v);
    Ok(())
}
/// Writes an int64.
pub fn put_int64(buf: &mut BytesMut, v: i64) -> Result<(), EncodeError> {
    buf.put_i64(v);
    Ok(())
}
/// Writes a float64.
pub fn put_float64(buf: &mut BytesMut, v: f64) -> Result<(), EncodeError> {
    buf.put_f64(v);
    Ok(())
}
/// Writes a boolean as 0 or 1.
pub fn put_boolean(buf: &mut BytesMut, v: bool) -> Result<(), EncodeError> {
    buf.put_u8(u8::from(v));
    Ok(())
}
/// Writes a UUID.
pub fn put_uuid(buf: &mut BytesMut, v: Uuid) -> Result<(), EncodeError> {
    buf.put_slice(&v.0);
    Ok(())
}
/// Writes an unsigned varint.
pub fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_length(
    buf: &mut BytesMut,
    len: Option<usize>,
    compact: bool,
    short: bool,
) -> Result<(), EncodeError> {
    match (len, compact) {
        (None, true) => put_uvarint(buf, 0),
        (None, false) if short => buf.put_i16(-1),
        (None, false) => buf.put_i32(-1),
        (Some(n), true) => {
            let v = u32::try_from(n)
                .ok()
                .and_then(|n| n.checked_add(1))
                .ok_or(EncodeError::TooLong(n))?;
            put_uvarint(buf, v);
        }
        (Some(n), false) if short => {
            buf.put_i16(i16::try_from(n).map_err(|_| EncodeError::TooLong(n))?)
        }
        (Some(n), false) => buf.put_i32(i32::try_from(n).map_err(|_| EncodeError::TooLong(n))?),
    }
    Ok(())
}

fn check_null<T>(v: &Option<T>, nullable: bool, field: &'static str) -> Result<(), EncodeError> {
    if v.is_none() && !nullable {
        Err(EncodeError::NullNotAllowed(field))
    } else {
        Ok(())
    }
}

/// Writes a string.
pub fn put_string(buf: &mut BytesMut, v: &str, compact: bool) -> Result<(), EncodeError> {
    put_length(buf, Some(v.len()), compact, !compact)?;
    buf.put_slice(v.as_bytes());
    Ok(())
}

/// Writes a nullable string; null is an error unless `nullable`.
pub fn put_nullable_string(
    buf: &mut BytesMut,
    v: Option<&str>,
    compact: bool,
    nullable: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    check_null(&v, nullable, field)?;
    match v {
        Some(s) => put_string(buf, s, compact),
        None => put_length(buf, None, compact, !compact),
    }
}

/// Writes bytes.
pub fn put_bytes(buf: &mut BytesMut, v: &[u8], compact: bool) -> Result<(), EncodeError> {
    put_length(buf, Some(v.len()), compact, false)?;
    buf.put_slice(v);
    Ok(())
}

/// Writes nullable bytes; null is an error unless `nullable`.
pub fn put_nullable_bytes(
    buf: &mut BytesMut,
    v: Option<&[u8]>,
    compact: bool,
    nullable: bool,
    field: &'static str,
) -> Result<(), EncodeError> {
    check_null(&v, nullable, field)?;
    match v {
        Some(b) => put_bytes(buf, b, compact),
        None => put_length(buf, None, compact, false),
    }
}

/// Writes an array.
pub fn put_array<T>(
    buf: &mut BytesMut,
    v: &[T],
    compact: bool,
    mut item: impl FnMut(&mut BytesMut, &T) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    put_length(buf, Some(v.len()), compact, false)?;
    v.iter().try_for_each(|x| item(buf, x))
}

/// Writes a nullable array; null is an error unless `nullable`.
pub fn put_nullable_array<T>(
    buf: &mut BytesMut,
    v: Option<&[T]>,
    compact: bool,
    nullable: bool,
    field: &'static str,
    item: impl FnMut(&mut BytesMut, &T) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    check_null(&v, nullable, field)?;
    match v {
        Some(items) => put_array(buf, items, compact, item),
        None => put_length(buf, None, compact, false),
    }
}

/// Writes a nullable struct with its int8 marker (only when nullable in this version).
pub fn put_nullable_struct<T>(
    buf: &mut BytesMut,
    v: Option<&T>,
    nullable: bool,
    field: &'static str,
    item: impl FnOnce(&mut BytesMut, &T) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    check_null(&v, nullable, field)?;
    match (v, nullable) {
        (Some(x), false) => item(buf, x),
        (Some(x), true) => {
            buf.put_i8(1);
            item(buf, x)
        }
        (None, _) => {
            buf.put_i8(-1);
            Ok(())
        }
    }
}

/// Collects known tagged fields during encoding and writes them, merged with the unknown
/// ones, in ascending tag order.
#[derive(Debug, Default)]
pub struct TaggedFieldsWriter {
    fields: Vec<(u32, Bytes)>,
}

impl TaggedFieldsWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes one known tagged field.
    pub fn field(
        &mut self,
        tag: u32,
        write: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        let mut data = BytesMut::new();
        write(&mut data)?;
        self.fields.push((tag, data.freeze()));
        Ok(())
    }

    /// Writes the tagged-field section.
    pub fn finish(
        mut self,
        buf: &mut BytesMut,
        unknown: &UnknownTaggedFields,
    ) -> Result<(), EncodeError> {
        self.fields.extend(unknown.0.iter().cloned());
        self.fields.sort_by_key(|(tag, _)| *tag);
        let count = self.fields.len();
        put_uvarint(
            buf,
            u32::try_from(count).map_err(|_| EncodeError::TooLong(count))?,
        );
        for (tag, data) in &self.fields {
            put_uvarint(buf, *tag);
            put_uvarint(
                buf,
                u32::try_from(data.len()).map_err(|_| EncodeError::TooLong(data.len()))?,
            );
            buf.put_slice(data);
        }
        Ok(())
    }
}

/// Minimum encoded size of one item, used to bound array counts before allocating.
pub const MIN_STRUCT_SIZE: usize = 1;

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_err<T: std::fmt::Debug>(buf: &Bytes, r: PResult<'_, T>) -> DecodeError {
        Ctx::new(buf).error(r.unwrap_err())
    }

    #[test]
    fn uvarint_limits() {
        assert_eq!(uvarint(&[0x00]).unwrap().1, 0);
        assert_eq!(
            uvarint(&[0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap().1,
            u32::MAX
        );
        let buf = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x1f]);
        assert_eq!(
            ctx_err(&buf, uvarint(&buf)).kind,
            DecodeErrorKind::VarintOverflow
        );
        let buf = Bytes::from_static(&[0x80, 0x80]);
        assert_eq!(
            ctx_err(&buf, uvarint(&buf)).kind,
            DecodeErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn array_count_larger_than_input_is_refused_before_allocating() {
        let buf = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1]);
        let err = ctx_err(&buf, array(&buf, false, 4, int32));
        assert!(matches!(
            err.kind,
            DecodeErrorKind::InvalidLength {
                length: 0x7fff_ffff,
                ..
            }
        ));
        assert_eq!(err.offset, 0);
    }

    #[test]
    fn negative_lengths_are_errors_and_minus_one_is_null() {
        let buf = Bytes::from_static(&[0xff, 0xfe]);
        assert!(matches!(
            ctx_err(&buf, nullable_string(&buf, false, true)).kind,
            DecodeErrorKind::InvalidLength { length: -2, .. }
        ));
        let buf = Bytes::from_static(&[0xff, 0xff]);
        assert_eq!(nullable_string(&buf, false, true).unwrap().1, None);
        assert_eq!(
            ctx_err(&buf, nullable_string(&buf, false, false)).kind,
            DecodeErrorKind::NullNotAllowed
        );
    }

    #[test]
    fn bytes_are_zero_copy() {
        let buf = Bytes::from_static(&[0, 0, 0, 3, b'a', b'b', b'c']);
        let ctx = Ctx::new(&buf);
        let (_, b) = bytes(&ctx, &buf, false).unwrap();
        assert_eq!(b.as_ptr(), buf[4..].as_ptr());
    }

    #[test]
    fn tagged_fields_round_trip_and_order() {
        let mut buf = BytesMut::new();
        let mut w = TaggedFieldsWriter::new();
        w.field(3, |b| put_int32(b, 7)).unwrap();
        let unknown = UnknownTaggedFields(vec![(1, Bytes::from_static(b"x"))]);
        w.finish(&mut buf, &unknown).unwrap();
        let (rest, fields) = tagged_fields(&buf).unwrap();
        assert!(rest.is_empty());
        assert_eq!(fields, vec![(1, &b"x"[..]), (3, &[0, 0, 0, 7][..])]);
        // Out-of-order tags are rejected.
        let bad = [2u8, 3, 0, 1, 0];
        assert!(tagged_fields(&bad).is_err());
    }
}
