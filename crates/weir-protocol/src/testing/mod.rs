//! Test support for the generated messages: random values valid for a version (`Arb`) and
//! the round-trip property test every message runs.

use crate::codec::UnknownTaggedFields;
use crate::message::Message;
pub(crate) use arbitrary::Unstructured;
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

/// Builds a random value that is valid for `version`: fields the version does not carry keep
/// their defaults, and null appears only where the version allows it.
pub(crate) trait Arb: Sized {
    fn arb(u: &mut Unstructured<'_>, version: i16) -> arbitrary::Result<Self>;
}

pub(crate) fn arb_f64(u: &mut Unstructured<'_>) -> arbitrary::Result<f64> {
    // NaN never equals itself, which would make any round trip look broken.
    let v: f64 = u.arbitrary()?;
    Ok(if v.is_finite() { v } else { 0.5 })
}

pub(crate) fn arb_string(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let len = u.int_in_range(0..=8)?;
    (0..len).map(|_| u.arbitrary::<char>()).collect()
}

pub(crate) fn arb_bytes(u: &mut Unstructured<'_>) -> arbitrary::Result<Bytes> {
    let len = u.int_in_range(0..=16)?.min(u.len());
    Ok(Bytes::copy_from_slice(u.bytes(len)?))
}

pub(crate) fn arb_vec<T>(
    u: &mut Unstructured<'_>,
    mut item: impl FnMut(&mut Unstructured<'_>) -> arbitrary::Result<T>,
) -> arbitrary::Result<Vec<T>> {
    let len = u.int_in_range(0..=3)?;
    (0..len).map(|_| item(u)).collect()
}

pub(crate) fn arb_option<T>(
    u: &mut Unstructured<'_>,
    nullable: bool,
    value: impl FnOnce(&mut Unstructured<'_>) -> arbitrary::Result<T>,
) -> arbitrary::Result<Option<T>> {
    if nullable && u.ratio(1, 4)? {
        Ok(None)
    } else {
        value(u).map(Some)
    }
}

pub(crate) fn arb_unknown_tagged_fields(
    u: &mut Unstructured<'_>,
) -> arbitrary::Result<UnknownTaggedFields> {
    // Tags far above any Kafka defines, so they stay unknown.
    let n = u.int_in_range(0..=2)?;
    let mut fields = Vec::new();
    for i in 0..n {
        fields.push((1000 + 10 * i, arb_bytes(u)?));
    }
    Ok(UnknownTaggedFields(fields))
}

/// Encode → decode → compare → re-encode → compare bytes, in every version of `M`.
pub(crate) fn check_round_trip<M: Message + Arb>() {
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(data in proptest::collection::vec(any::<u8>(), 0..512))| {
        for version in M::VERSIONS.min..=M::VERSIONS.max {
            let mut u = Unstructured::new(&data);
            let value = M::arb(&mut u, version).unwrap();
            let mut buf = BytesMut::new();
            value.encode(&mut buf, version).unwrap();
            let bytes = buf.freeze();
            let decoded = M::decode_exact(bytes.clone(), version);
            prop_assert_eq!(decoded.as_ref(), Ok(&value), "{} v{}", M::NAME, version);
            let mut again = BytesMut::new();
            value.encode(&mut again, version).unwrap();
            prop_assert_eq!(&again[..], &bytes[..]);
        }
    });
}

/// Arbitrary bytes never panic the decoder, in any version of `M`.
pub(crate) fn check_garbage<M: Message>() {
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(data in proptest::collection::vec(any::<u8>(), 0..256))| {
        for version in M::VERSIONS.min..=M::VERSIONS.max {
            let _ = M::decode_exact(Bytes::from(data.clone()), version);
        }
    });
}

/// One test per message: `name: Type,`.
macro_rules! round_trip_tests {
    ($($test:ident: $ty:ty,)*) => {
        $(
            #[test]
            fn $test() {
                crate::testing::check_round_trip::<$ty>();
                crate::testing::check_garbage::<$ty>();
            }
        )*
    };
}
pub(crate) use round_trip_tests;

mod differential;
