//! `queued.max.request.bytes`: a broker-wide cap on the bytes of requests held at once.
//!
//! A connection reserves a request's announced size from this pool once the size prefix has
//! arrived, before it reads the body, and gives it back once the request has been handled. While
//! the pool is exhausted the connection reads nothing more, so its bytes wait in the kernel's
//! socket buffer (TCP flow control slows the client down) instead of in the broker's memory.
//!
//! Kafka's memory pool is one pool: once large requests exhaust it, Kafka stops reading *every*
//! connection, so 200 clients each announcing 100 MiB and trickling it stall a consumer's
//! heartbeat or a 1 KiB Produce on another connection. Here the pool is split:
//!
//! - requests larger than [`SMALL_REQUEST_BYTES`] wait, in arrival order, for the *shared* part
//!   (three quarters of the cap);
//! - smaller ones take from the shared part when it has room at once, and otherwise wait for the
//!   *reserved* quarter that large requests never touch.
//!
//! So however many large requests are queued or trickling, small requests (ApiVersions,
//! Metadata, heartbeats, ordinary Produce and Fetch requests, whose size is bounded by
//! `max.request.size`, 1 MiB by default in every client) always find a quarter of the cap, and
//! the total never exceeds the cap. A request larger than its part (possible when
//! `socket.request.max.bytes` exceeds the cap) takes the whole part, so it can still be served,
//! alone.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests up to this size count as small: they may use the reserved part of the pool. Above
/// every client's default `max.request.size` (1 MiB) with room for request headers.
pub(crate) const SMALL_REQUEST_BYTES: usize = 2 << 20;

/// The pool of request bytes.
#[derive(Debug)]
pub(crate) struct RequestMemory {
    /// For every request; large ones wait here, in order.
    shared: Arc<Semaphore>,
    shared_size: usize,
    /// For small requests only, when `shared` has no room.
    reserved: Arc<Semaphore>,
    reserved_size: usize,
}

/// Bytes taken from the pool, returned when dropped.
#[derive(Debug)]
#[must_use = "the reservation is returned when dropped"]
pub(crate) struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
}

impl RequestMemory {
    /// A pool of `cap` bytes (`None`: unbounded, Kafka's `queued.max.request.bytes=-1`).
    pub(crate) fn new(cap: Option<usize>) -> Self {
        let cap = cap
            .unwrap_or(Semaphore::MAX_PERMITS)
            .min(Semaphore::MAX_PERMITS);
        let reserved_size = cap / 4;
        let shared_size = cap - reserved_size;
        Self {
            shared: Arc::new(Semaphore::new(shared_size)),
            shared_size,
            reserved: Arc::new(Semaphore::new(reserved_size)),
            reserved_size,
        }
    }

    /// Reserves room for a request of `size` bytes, waiting until there is some.
    ///
    /// Cancel-safe: a reservation abandoned while waiting takes nothing.
    pub(crate) async fn reserve(&self, size: usize) -> Reservation {
        if size == 0 {
            return Reservation { _permit: None };
        }
        if size <= SMALL_REQUEST_BYTES {
            if let Ok(permit) = self.shared.clone().try_acquire_many_owned(permits(size)) {
                return Reservation {
                    _permit: Some(permit),
                };
            }
            if self.reserved_size > 0 {
                let wanted = permits(size.min(self.reserved_size));
                return Reservation {
                    _permit: self.reserved.clone().acquire_many_owned(wanted).await.ok(),
                };
            }
        }
        let wanted = permits(size.min(self.shared_size));
        Reservation {
            _permit: self.shared.clone().acquire_many_owned(wanted).await.ok(),
        }
    }

    /// Bytes not reserved right now (shared and reserved parts together), for tests.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.shared.available_permits() + self.reserved.available_permits()
    }
}

/// A size as semaphore permits (one per byte); sizes are bounded by
/// `socket.request.max.bytes`, an int, so they fit.
fn permits(size: usize) -> u32 {
    u32::try_from(size).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MIB: usize = 1 << 20;

    #[tokio::test]
    async fn large_requests_leave_the_reserved_quarter_to_small_ones() {
        let pool = RequestMemory::new(Some(256 * MIB));
        let first = pool.reserve(100 * MIB).await;
        // The second 100 MiB request fits in the shared 192 MiB only after the first is done.
        let second = tokio::time::timeout(Duration::from_millis(50), pool.reserve(100 * MIB));
        assert!(second.await.is_err());
        let _filler = pool.reserve(92 * MIB).await;
        // Shared part full: small requests still get room.
        let mut small = Vec::new();
        for _ in 0..60 {
            small.push(
                tokio::time::timeout(Duration::from_millis(50), pool.reserve(MIB))
                    .await
                    .expect("a small request gets room while large ones hold the shared part"),
            );
        }
        assert_eq!(pool.available(), 4 * MIB);
        drop(first);
        drop(small);
        assert_eq!(pool.available(), 164 * MIB);
    }

    #[tokio::test]
    async fn a_request_larger_than_the_pool_takes_all_of_its_part() {
        let pool = RequestMemory::new(Some(8 * MIB));
        let big = pool.reserve(100 * MIB).await;
        assert_eq!(pool.available(), 2 * MIB);
        let small = pool.reserve(MIB).await;
        assert_eq!(pool.available(), MIB);
        drop(big);
        drop(small);
        assert_eq!(pool.available(), 8 * MIB);
    }

    #[tokio::test]
    async fn unbounded_pool_never_waits() {
        let pool = RequestMemory::new(None);
        let _a = pool.reserve(100 * MIB).await;
        let _b = pool.reserve(100 * MIB).await;
        let _c = pool.reserve(MIB).await;
    }
}
