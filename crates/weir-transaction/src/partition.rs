//! Which `__transaction_state` partition, and so which coordinator, owns a transactional id;
//! and which `__consumer_offsets` partition AddOffsetsToTxn adds for a group.

/// The partition that owns `id` among `num_partitions`:
/// `abs(javaStringHashCode(id)) % num_partitions`, exactly as Kafka computes it for both
/// `__transaction_state` (transactional ids) and `__consumer_offsets` (group ids), so a Weir
/// broker and a Kafka broker agree on placement.
///
/// Java's `String.hashCode` runs over UTF-16 code units; Kafka's `Utils.abs` maps
/// `Integer.MIN_VALUE` to 0 rather than leaving it negative. `num_partitions <= 0` yields 0.
pub fn partition_for(id: &str, num_partitions: i32) -> i32 {
    if num_partitions <= 0 {
        return 0;
    }
    let hash = id.encode_utf16().fold(0i32, |h, unit| {
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
        assert_eq!(partition_for("anything", 0), 0);
    }
}
