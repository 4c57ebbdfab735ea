//! Serdes: how keys and values become bytes on a topic and back.
//!
//! The built-in serdes write what Kafka's own serializers write, so a Weir Streams application
//! and a Java one read each other's topics: integers big-endian, strings UTF-8, JSON as
//! `serde_json` writes it.

use std::marker::PhantomData;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::window::{Window, Windowed};

/// Turns a `T` into bytes and back.
///
/// Kafka records may carry a null key or value; [`Serde::serialize_nullable`] and
/// [`Serde::deserialize_nullable`] are what the topology calls, and by default they refuse
/// null ([`Error::NullData`]). [`Nullable`] maps null to `None`.
pub trait Serde<T>: Send + Sync + 'static {
    /// The bytes for `value`.
    fn serialize(&self, value: &T) -> Result<Vec<u8>, Error>;

    /// The value these bytes encode.
    fn deserialize(&self, data: &[u8]) -> Result<T, Error>;

    /// The record's key or value for `value`, `None` for a null.
    fn serialize_nullable(&self, value: &T) -> Result<Option<Vec<u8>>, Error> {
        self.serialize(value).map(Some)
    }

    /// The value for a record's key or value, which may be null.
    fn deserialize_nullable(&self, data: Option<&[u8]>) -> Result<T, Error> {
        match data {
            Some(data) => self.deserialize(data),
            None => Err(Error::NullData),
        }
    }
}

/// A shared serde is a serde (the DSL keeps serdes behind `Arc`s to hand them down).
impl<T: 'static> Serde<T> for std::sync::Arc<dyn Serde<T>> {
    fn serialize(&self, value: &T) -> Result<Vec<u8>, Error> {
        (**self).serialize(value)
    }

    fn deserialize(&self, data: &[u8]) -> Result<T, Error> {
        (**self).deserialize(data)
    }

    fn serialize_nullable(&self, value: &T) -> Result<Option<Vec<u8>>, Error> {
        (**self).serialize_nullable(value)
    }

    fn deserialize_nullable(&self, data: Option<&[u8]>) -> Result<T, Error> {
        (**self).deserialize_nullable(data)
    }
}

/// Raw bytes, as they are (Kafka's `Serdes.ByteArray()`), for `Vec<u8>` and [`Bytes`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize(&self, value: &Vec<u8>) -> Result<Vec<u8>, Error> {
        Ok(value.clone())
    }

    fn deserialize(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(data.to_vec())
    }
}

impl Serde<Bytes> for BytesSerde {
    fn serialize(&self, value: &Bytes) -> Result<Vec<u8>, Error> {
        Ok(value.to_vec())
    }

    fn deserialize(&self, data: &[u8]) -> Result<Bytes, Error> {
        Ok(Bytes::copy_from_slice(data))
    }
}

/// UTF-8 strings (Kafka's `Serdes.String()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize(&self, value: &String) -> Result<Vec<u8>, Error> {
        Ok(value.as_bytes().to_vec())
    }

    fn deserialize(&self, data: &[u8]) -> Result<String, Error> {
        String::from_utf8(data.to_vec()).map_err(Error::Utf8)
    }
}

/// 64-bit integers, 8 bytes big-endian (Kafka's `Serdes.Long()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct I64Serde;

impl Serde<i64> for I64Serde {
    fn serialize(&self, value: &i64) -> Result<Vec<u8>, Error> {
        Ok(value.to_be_bytes().to_vec())
    }

    fn deserialize(&self, data: &[u8]) -> Result<i64, Error> {
        let bytes: [u8; 8] = data.try_into().map_err(|_| Error::DataSize {
            expected: 8,
            actual: data.len(),
        })?;
        Ok(i64::from_be_bytes(bytes))
    }
}

/// 32-bit integers, 4 bytes big-endian (Kafka's `Serdes.Integer()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct I32Serde;

impl Serde<i32> for I32Serde {
    fn serialize(&self, value: &i32) -> Result<Vec<u8>, Error> {
        Ok(value.to_be_bytes().to_vec())
    }

    fn deserialize(&self, data: &[u8]) -> Result<i32, Error> {
        let bytes: [u8; 4] = data.try_into().map_err(|_| Error::DataSize {
            expected: 4,
            actual: data.len(),
        })?;
        Ok(i32::from_be_bytes(bytes))
    }
}

/// Any serde type as JSON, through `serde_json`.
pub struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T> JsonSerde<T> {
    /// A JSON serde for `T`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for JsonSerde<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for JsonSerde<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for JsonSerde<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonSerde")
    }
}

impl<T: Serialize + DeserializeOwned + 'static> Serde<T> for JsonSerde<T> {
    fn serialize(&self, value: &T) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(value).map_err(Error::Json)
    }

    fn deserialize(&self, data: &[u8]) -> Result<T, Error> {
        serde_json::from_slice(data).map_err(Error::Json)
    }
}

/// Reads a null key or value as `None` and writes `None` as null; any other data goes through
/// the inner serde. Records produced without a key (kafka-python's `send(topic, value=...)`)
/// need this as their key serde.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nullable<S>(pub S);

impl<T, S: Serde<T>> Serde<Option<T>> for Nullable<S> {
    fn serialize(&self, value: &Option<T>) -> Result<Vec<u8>, Error> {
        match value {
            Some(value) => self.0.serialize(value),
            None => Err(Error::NullData),
        }
    }

    fn deserialize(&self, data: &[u8]) -> Result<Option<T>, Error> {
        self.0.deserialize(data).map(Some)
    }

    fn serialize_nullable(&self, value: &Option<T>) -> Result<Option<Vec<u8>>, Error> {
        value
            .as_ref()
            .map(|value| self.0.serialize(value))
            .transpose()
    }

    fn deserialize_nullable(&self, data: Option<&[u8]>) -> Result<Option<T>, Error> {
        data.map(|data| self.0.deserialize(data)).transpose()
    }
}

/// A windowed key as Kafka's `TimeWindowedSerde` writes it: the inner key's bytes, then the
/// window start as 8 bytes big-endian. The window end is not written; reading takes it from
/// the window size.
#[derive(Debug, Clone, Copy)]
pub struct TimeWindowedSerde<S> {
    inner: S,
    window_size_ms: i64,
}

impl<S> TimeWindowedSerde<S> {
    /// Windowed keys whose key goes through `inner`, for windows of `window_size`.
    pub fn new(inner: S, window_size: std::time::Duration) -> Self {
        let window_size_ms = i64::try_from(window_size.as_millis()).unwrap_or(i64::MAX);
        Self {
            inner,
            window_size_ms,
        }
    }
}

impl<K, S: Serde<K>> Serde<Windowed<K>> for TimeWindowedSerde<S> {
    fn serialize(&self, value: &Windowed<K>) -> Result<Vec<u8>, Error> {
        let mut data = self.inner.serialize(&value.key)?;
        data.extend_from_slice(&value.window.start.to_be_bytes());
        Ok(data)
    }

    fn deserialize(&self, data: &[u8]) -> Result<Windowed<K>, Error> {
        let split = data.len().checked_sub(8).ok_or(Error::DataSize {
            expected: 8,
            actual: data.len(),
        })?;
        let (key, start) = data.split_at(split);
        let start = I64Serde.deserialize(start)?;
        let window = Window {
            start,
            end: start.saturating_add(self.window_size_ms),
        };
        Ok(Windowed {
            key: self.inner.deserialize(key)?,
            window,
        })
    }
}

/// A window store's changelog key, as Kafka's window stores log it (`WindowKeySchema`'s store
/// key): the inner key's bytes, the window start (8 bytes, big-endian), then a sequence
/// number (4 bytes, big-endian), 0 for stores that keep one value per key and window. Not
/// [`TimeWindowedSerde`], which topics use and which has no sequence number.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowStoreKeySerde<S> {
    windowed: TimeWindowedSerde<S>,
}

impl<S> WindowStoreKeySerde<S> {
    pub(crate) fn new(inner: S, window_size: std::time::Duration) -> Self {
        Self {
            windowed: TimeWindowedSerde::new(inner, window_size),
        }
    }
}

impl<K, S: Serde<K>> Serde<Windowed<K>> for WindowStoreKeySerde<S> {
    fn serialize(&self, value: &Windowed<K>) -> Result<Vec<u8>, Error> {
        let mut data = self.windowed.serialize(value)?;
        data.extend_from_slice(&0_u32.to_be_bytes());
        Ok(data)
    }

    fn deserialize(&self, data: &[u8]) -> Result<Windowed<K>, Error> {
        let (windowed, _seqnum) = data.split_last_chunk::<4>().ok_or(Error::DataSize {
            expected: 12,
            actual: data.len(),
        })?;
        self.windowed.deserialize(windowed)
    }
}

/// A session-windowed key as Kafka's `SessionWindowedSerde` writes it: the inner key's
/// bytes, then the session's end and start, each 8 bytes big-endian.
#[derive(Debug, Clone, Copy)]
pub struct SessionWindowedSerde<S> {
    inner: S,
}

impl<S> SessionWindowedSerde<S> {
    /// Session-windowed keys whose key goes through `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<K, S: Serde<K>> Serde<Windowed<K>> for SessionWindowedSerde<S> {
    fn serialize(&self, value: &Windowed<K>) -> Result<Vec<u8>, Error> {
        let mut data = self.inner.serialize(&value.key)?;
        data.extend_from_slice(&value.window.end.to_be_bytes());
        data.extend_from_slice(&value.window.start.to_be_bytes());
        Ok(data)
    }

    fn deserialize(&self, data: &[u8]) -> Result<Windowed<K>, Error> {
        let split = data.len().checked_sub(16).ok_or(Error::DataSize {
            expected: 16,
            actual: data.len(),
        })?;
        let (key, times) = data.split_at(split);
        let (end, start) = times.split_at(8);
        Ok(Windowed {
            key: self.inner.deserialize(key)?,
            window: Window {
                start: I64Serde.deserialize(start)?,
                end: I64Serde.deserialize(end)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn integers_are_big_endian_like_kafka() {
        assert_eq!(I64Serde.serialize(&1).unwrap(), [0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(I32Serde.serialize(&-2).unwrap(), [0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(
            I64Serde.deserialize(&[0, 0, 0, 0, 0, 0, 1, 0]).unwrap(),
            256
        );
        assert!(matches!(
            I32Serde.deserialize(&[1, 2, 3]),
            Err(Error::DataSize {
                expected: 4,
                actual: 3
            })
        ));
    }

    #[test]
    fn strings_bytes_and_json_round_trip() {
        let s = "héllo".to_string();
        assert_eq!(
            StringSerde
                .deserialize(&StringSerde.serialize(&s).unwrap())
                .unwrap(),
            s
        );
        assert!(matches!(
            StringSerde.deserialize(&[0xff]),
            Err(Error::Utf8(_))
        ));
        let b = Bytes::from_static(b"\x00\x01");
        assert_eq!(Serde::<Bytes>::deserialize(&BytesSerde, &b).unwrap(), b);
        let json = JsonSerde::<std::collections::BTreeMap<String, i64>>::new();
        let map = [("a".to_string(), 1)].into_iter().collect();
        assert_eq!(json.serialize(&map).unwrap(), br#"{"a":1}"#);
        assert_eq!(json.deserialize(br#"{"a":1}"#).unwrap(), map);
        assert!(matches!(json.deserialize(b"{"), Err(Error::Json(_))));
    }

    #[test]
    fn null_needs_nullable() {
        assert!(matches!(
            StringSerde.deserialize_nullable(None),
            Err(Error::NullData)
        ));
        let nullable = Nullable(StringSerde);
        assert_eq!(nullable.deserialize_nullable(None).unwrap(), None);
        assert_eq!(
            nullable.deserialize_nullable(Some(b"k")).unwrap(),
            Some("k".to_string())
        );
        assert_eq!(nullable.serialize_nullable(&None).unwrap(), None);
        assert_eq!(
            nullable.serialize_nullable(&Some("k".into())).unwrap(),
            Some(b"k".to_vec())
        );
    }

    #[test]
    fn windowed_keys_append_the_window_start() {
        let serde = TimeWindowedSerde::new(StringSerde, std::time::Duration::from_secs(10));
        let key = Windowed {
            key: "u".to_string(),
            window: Window {
                start: 20_000,
                end: 30_000,
            },
        };
        let data = serde.serialize(&key).unwrap();
        assert_eq!(data, [b"u".as_slice(), &20_000i64.to_be_bytes()].concat());
        assert_eq!(serde.deserialize(&data).unwrap(), key);
        assert!(serde.deserialize(&[1, 2]).is_err());
    }

    #[test]
    fn session_keys_append_end_then_start() {
        let serde = SessionWindowedSerde::new(StringSerde);
        let key = Windowed {
            key: "u".to_string(),
            window: Window { start: 5, end: 9 },
        };
        let data = serde.serialize(&key).unwrap();
        let expected = [b"u".as_slice(), &9i64.to_be_bytes(), &5i64.to_be_bytes()].concat();
        assert_eq!(data, expected);
        assert_eq!(serde.deserialize(&data).unwrap(), key);
    }
}
