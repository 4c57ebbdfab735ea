//! Records inside a batch and their headers, decoded lazily.
//!
//! Each record is: length (varint), attributes (int8, unused), timestamp delta (varlong),
//! offset delta (varint), key length (varint, -1 for null) and key, value length and value,
//! header count (varint) and headers (key length, key, value length (-1 for null), value).

use crate::batch::BatchHeader;
use crate::varint::{read_varint, read_varlong};
use crate::{Error, Result};
use bytes::Bytes;

/// A record header. Duplicate keys and null values are legal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// Header key; Kafka clients treat it as UTF-8 but the format does not enforce it.
    pub key: Bytes,
    /// Header value, or null.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header from borrowed parts (copies them).
    pub fn new(key: &[u8], value: Option<&[u8]>) -> Self {
        Self {
            key: Bytes::copy_from_slice(key),
            value: value.map(Bytes::copy_from_slice),
        }
    }
}

/// One record with absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Record {
    /// Record attributes byte (unused by Kafka, kept as read).
    pub attributes: i8,
    /// Absolute offset (base offset + offset delta).
    pub offset: i64,
    /// Absolute timestamp (base timestamp + timestamp delta).
    pub timestamp: i64,
    /// Key, or null.
    pub key: Option<Bytes>,
    /// Value, or null (a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<Header>,
}

impl Record {
    /// A record from borrowed key and value (copies them); the offset is assigned by the batch.
    pub fn new(timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Self {
        Self {
            timestamp,
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            ..Self::default()
        }
    }

    /// Returns the record with a header appended.
    pub fn with_header(mut self, header: Header) -> Self {
        self.headers.push(header);
        self
    }
}

/// Lazy iterator over the records of one uncompressed (or already decompressed) payload.
#[derive(Debug, Clone)]
pub struct Records {
    rest: Bytes,
    base_offset: i64,
    base_timestamp: i64,
    remaining: i32,
    failed: bool,
}

impl Records {
    pub(crate) fn new(payload: Bytes, header: BatchHeader) -> Self {
        Self {
            rest: payload,
            base_offset: header.base_offset,
            base_timestamp: header.base_timestamp,
            remaining: header.record_count.max(0),
            failed: false,
        }
    }

    fn decode_next(&mut self) -> Result<Record> {
        let (length, n) = read_varint(&self.rest)?;
        let length = usize::try_from(length).map_err(|_| Error::CorruptRecord("negative record length"))?;
        if n + length > self.rest.len() {
            return Err(Error::Truncated {
                needed: n + length,
                available: self.rest.len(),
            });
        }
        let mut body = Cursor {
            bytes: self.rest.slice(n..n + length),
            pos: 0,
        };
        let _ = self.rest.split_to(n + length);

        let attributes = body.i8()?;
        let timestamp_delta = body.varlong()?;
        let offset_delta = body.varint()?;
        let key = body.nullable_bytes()?;
        let value = body.nullable_bytes()?;
        let header_count = body.varint()?;
        let header_count = usize::try_from(header_count)
            .map_err(|_| Error::CorruptRecord("negative header count"))?;
        // Each header takes at least two bytes (two length varints): refuse counts the bytes
        // cannot hold before allocating.
        if header_count > body.remaining() / 2 {
            return Err(Error::CorruptRecord("header count exceeds record size"));
        }
        let mut headers = Vec::with_capacity(header_count);
        for _ in 0..header_count {
            let key = body
                .nullable_bytes()?
                .ok_or(Error::CorruptRecord("null header key"))?;
            let value = body.nullable_bytes()?;
            headers.push(Header { key, value });
        }
        if body.remaining() != 0 {
            return Err(Error::CorruptRecord("record length does not match its fields"));
        }
        Ok(Record {
            attributes,
            offset: self.base_offset.wrapping_add(i64::from(offset_delta)),
            timestamp: self.base_timestamp.wrapping_add(timestamp_delta),
            key,
            value,
            headers,
        })
    }
}

impl Iterator for Records {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.remaining == 0 {
            if self.rest.is_empty() {
                return None;
            }
            self.failed = true;
            return Some(Err(Error::CorruptRecord("bytes left after the last record")));
        }
        self.remaining -= 1;
        let result = self.decode_next();
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

struct Cursor {
    bytes: Bytes,
    pos: usize,
}

impl Cursor {
    fn rest(&self) -> &[u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }
    fn i8(&mut self) -> Result<i8> {
        let byte = *self.rest().first().ok_or(Error::Truncated {
            needed: 1,
            available: 0,
        })?;
        self.pos += 1;
        Ok(byte as i8)
    }
    fn varint(&mut self) -> Result<i32> {
        let (v, n) = read_varint(self.rest())?;
        self.pos += n;
        Ok(v)
    }
    fn varlong(&mut self) -> Result<i64> {
        let (v, n) = read_varlong(self.rest())?;
        self.pos += n;
        Ok(v)
    }
    fn nullable_bytes(&mut self) -> Result<Option<Bytes>> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        if len > self.remaining() {
            return Err(Error::CorruptRecord("field length exceeds record size"));
        }
        let out = self.bytes.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(Some(out))
    }
}
