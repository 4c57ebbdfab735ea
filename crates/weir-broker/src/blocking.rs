//! Where the broker's file I/O runs: every log, registry and snapshot operation that can block
//! goes through [`spawn`], onto tokio's blocking pool, so an fsync or a directory scan never
//! stalls the worker threads that serve every connection. The closure runs inside
//! [`weir_log::fs::allow_blocking`]: a test that installs a
//! [`weir_log::fs::BlockingIoObserver`] sees any file operation *outside* such a closure on a
//! runtime thread, which is a stall waiting to happen (`tests/runtime_io.rs`).

use tokio::task::JoinHandle;

/// Runs `work` on the blocking pool, marked as allowed to block.
pub(crate) fn spawn<T, F>(work: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || weir_log::fs::allow_blocking(work))
}
