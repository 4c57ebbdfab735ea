//! The Java client's default partitioner: murmur2 of the key for keyed records, sticky
//! partitions for records without a key.

use std::collections::HashMap;

/// Kafka's murmur2 (MurmurHash2, 32-bit, seed `0x9747b28c`), as `Utils.murmur2` computes it:
/// the same key hashes to the same value in every Kafka client that follows the Java one.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    // The tail bytes are folded in as Java does it: sign-less, highest first.
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of a keyed record: `toPositive(murmur2(key)) % partitions`, over all
/// partitions whether or not they have a leader, as the Java client does.
pub fn partition_for_key(key: &[u8], partitions: usize) -> i32 {
    let positive = (murmur2(key) & 0x7fff_ffff) as usize;
    (positive % partitions.max(1)) as i32
}

/// Sticky partitioning for records without a key (KIP-480, KIP-794): all such records of a
/// topic go to one partition until about `batch.size` bytes have gone there, then another
/// partition is picked at random. Batches fill up instead of spreading single records.
#[derive(Debug)]
pub(crate) struct StickyPartitioner {
    batch_size: usize,
    topics: HashMap<String, Sticky>,
    rng: u64,
}

#[derive(Debug, Clone, Copy)]
struct Sticky {
    partition: i32,
    bytes: usize,
}

impl StickyPartitioner {
    pub(crate) fn new(batch_size: usize, seed: u64) -> Self {
        Self {
            batch_size,
            topics: HashMap::new(),
            // xorshift must not start at zero.
            rng: seed | 1,
        }
    }

    /// The partition for a record of `size` bytes without a key.
    pub(crate) fn partition(&mut self, topic: &str, partitions: usize, size: usize) -> i32 {
        let partitions = partitions.max(1);
        let current = self.topics.get(topic).copied();
        let sticky = match current {
            Some(s) if (s.partition as usize) < partitions && s.bytes < self.batch_size => s,
            previous => {
                let mut partition = (self.next_random() % partitions as u64) as i32;
                if let Some(p) = previous {
                    if partitions > 1 && partition == p.partition {
                        partition = (partition + 1) % partitions as i32;
                    }
                }
                Sticky {
                    partition,
                    bytes: 0,
                }
            }
        };
        let entry = self.topics.entry(topic.to_string()).or_insert(sticky);
        *entry = Sticky {
            partition: sticky.partition,
            bytes: sticky.bytes + size,
        };
        sticky.partition
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own vectors from `UtilsTest.testMurmur2` (clients module), as Java `int`s.
    const KAFKA_MURMUR2_VECTORS: &[(&[u8], i32)] = &[
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107),
    ];

    #[test]
    fn murmur2_matches_kafkas_test_vectors() {
        for (key, expected) in KAFKA_MURMUR2_VECTORS {
            assert_eq!(murmur2(key), *expected, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn keyed_partitions_are_positive_hash_mod_count() {
        // murmur2("21") is negative: the sign bit is masked, not negated.
        let positive = (-973_932_308i32 & 0x7fff_ffff) as usize;
        assert_eq!(partition_for_key(b"21", 7), (positive % 7) as i32);
        for n in 1..20 {
            let p = partition_for_key(b"foobar", n);
            assert!((0..n as i32).contains(&p));
        }
    }

    #[test]
    fn null_keys_stick_until_a_batch_is_full() {
        let mut sticky = StickyPartitioner::new(100, 42);
        let first = sticky.partition("t", 4, 30);
        assert_eq!(sticky.partition("t", 4, 30), first);
        assert_eq!(sticky.partition("t", 4, 30), first);
        assert_eq!(sticky.partition("t", 4, 30), first);
        // 120 bytes went to `first`: the next record moves on.
        let second = sticky.partition("t", 4, 30);
        assert_ne!(second, first);
        // Topics are independent, and one partition always sticks.
        assert_eq!(sticky.partition("single", 1, 1000), 0);
        assert_eq!(sticky.partition("single", 1, 1000), 0);
    }
}
