//! Where new producer ids come from.
//!
//! In KRaft mode Kafka brokers get blocks of producer ids from the controller
//! (AllocateProducerIds) and hand them out one at a time. The coordinator only needs "the next
//! unused id, if one is available now", so it takes any [`ProducerIdAllocator`] per call; the
//! broker shares one allocator between this coordinator and idempotent producers.

/// A source of unused producer ids.
pub trait ProducerIdAllocator {
    /// The next unused producer id, or `None` when none is available right now (the broker is
    /// still waiting for a block). The coordinator then answers COORDINATOR_LOAD_IN_PROGRESS,
    /// which clients retry, as Kafka does in the same situation.
    fn allocate(&mut self) -> Option<i64>;
}

impl<F: FnMut() -> Option<i64>> ProducerIdAllocator for F {
    fn allocate(&mut self) -> Option<i64> {
        self()
    }
}

/// A contiguous block of producer ids `[next, end)`, as AllocateProducerIds grants them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdBlock {
    next: i64,
    end: i64,
}

impl ProducerIdBlock {
    /// The block of `len` ids starting at `first`.
    pub fn new(first: i64, len: i64) -> Self {
        Self {
            next: first,
            end: first.saturating_add(len.max(0)),
        }
    }

    /// How many ids are left.
    pub fn remaining(&self) -> i64 {
        self.end - self.next
    }
}

impl ProducerIdAllocator for ProducerIdBlock {
    fn allocate(&mut self) -> Option<i64> {
        (self.next < self.end).then(|| {
            let id = self.next;
            self.next += 1;
            id
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_hands_out_each_id_once() {
        let mut block = ProducerIdBlock::new(1000, 2);
        assert_eq!(block.allocate(), Some(1000));
        assert_eq!(block.remaining(), 1);
        assert_eq!(block.allocate(), Some(1001));
        assert_eq!(block.allocate(), None);
    }

    #[test]
    fn closures_are_allocators() {
        let mut n = 5;
        let mut f = || {
            n += 1;
            Some(n)
        };
        assert_eq!(f.allocate(), Some(6));
    }
}
