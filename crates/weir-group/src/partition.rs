//! Which `__consumer_offsets` partition, and so which coordinator, owns a group.

/// The `__consumer_offsets` partition that holds `group_id`'s metadata and offsets:
/// `abs(javaStringHashCode(group_id)) % num_partitions`, exactly as Kafka computes it, so a Weir
/// broker and a Kafka broker agree on placement.
///
/// Java's `String.hashCode` runs over UTF-16 code units; Kafka's `Utils.abs` maps
/// `Integer.MIN_VALUE` to 0 rather than leaving it negative. `num_partitions <= 0` yields 0.
pub fn partition_for(group_id: &str, num_partitions: i32) -> i32 {
    if num_partitions <= 0 {
        return 0;
    }
    let hash = group_id.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % num_partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java_string_hash_code() {
        // "hello".hashCode() == 99162322 in Java.
        assert_eq!(partition_for("hello", 1000), 322);
        assert_eq!(partition_for("", 50), 0);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE in Java; Utils.abs gives 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // A negative hash: "Aa".hashCode() == 2112, "zzzzzzzz" overflows negative.
        let h = "zzzzzzzz"
            .encode_utf16()
            .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)));
        assert!(h < 0);
        assert_eq!(partition_for("zzzzzzzz", 50), h.abs() % 50);
    }

    #[test]
    fn non_bmp_characters_hash_as_surrogate_pairs() {
        // U+1F600 is the pair D83D DE00 in UTF-16.
        let expected = (0xD83Di32 * 31 + 0xDE00) % 7;
        assert_eq!(partition_for("\u{1F600}", 7), expected);
    }
}
