//! File descriptors: the broker raises its soft open-file limit at start, and its accept loops
//! back off instead of spinning when the process (or the system) has run out.
//!
//! Every connection, segment file and index costs a descriptor, and the usual soft limit
//! (1024) is far below what a broker needs, while the hard limit is usually generous; Kafka's
//! packaging raises it in the service unit, Weir does it itself (`setrlimit` through rustix).
//!
//! When `accept` fails with EMFILE or ENFILE the pending connection stays in the listen backlog
//! and the listener stays readable, so retrying at once spins a core without ever accepting it.
//! The loops wait [`BACKOFF`] between attempts instead, with one warning per burst, until a
//! descriptor is freed (a connection closes); the waiting clients are then accepted.

use rustix::io::Errno;
use rustix::process::{Resource, getrlimit, setrlimit};
use std::time::Duration;
use tracing::{debug, info, warn};

/// The pause between accepts while descriptors are exhausted.
pub(crate) const BACKOFF: Duration = Duration::from_millis(100);

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and logs what the broker got.
pub(crate) fn raise_open_file_limit() {
    let limit = getrlimit(Resource::Nofile);
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    if limit.current == limit.maximum {
        info!(
            limit = %show(limit.current),
            "open file limit (soft = hard)"
        );
        return;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => info!(
            limit = %show(limit.maximum),
            was = %show(limit.current),
            "raised the open file limit to the hard limit"
        ),
        Err(e) => warn!(
            limit = %show(limit.current),
            hard = %show(limit.maximum),
            error = %e,
            "cannot raise the open file limit; connections and segments beyond it will fail"
        ),
    }
}

/// What an accept loop does about failed accepts.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    /// Within a run of failures for want of descriptors (warned once).
    exhausted: bool,
}

impl AcceptBackoff {
    /// After a failed accept on `listener`: waits [`BACKOFF`] if descriptors (or kernel
    /// memory) ran out, logging the first time in a run; other errors concern one connection
    /// (reset before it was accepted) and are only logged.
    pub(crate) async fn failed(&mut self, listener: &'static str, error: &std::io::Error) {
        let exhausted = matches!(
            Errno::from_io_error(error),
            Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
        );
        if !exhausted {
            debug!(listener, %error, "accept failed");
            return;
        }
        if !self.exhausted {
            warn!(
                listener,
                %error,
                "out of file descriptors: accepting again every {} ms until some are freed",
                BACKOFF.as_millis()
            );
            self.exhausted = true;
        }
        tokio::time::sleep(BACKOFF).await;
    }

    /// After a successful accept: ends a run of failures.
    pub(crate) fn accepted(&mut self, listener: &'static str) {
        if std::mem::take(&mut self.exhausted) {
            info!(listener, "accepting connections again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        raise_open_file_limit();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(limit.current, limit.maximum);
    }

    #[tokio::test]
    async fn only_running_out_of_descriptors_waits() {
        let mut backoff = AcceptBackoff::default();
        let started = std::time::Instant::now();
        backoff
            .failed("test", &std::io::Error::from_raw_os_error(104))
            .await;
        assert!(started.elapsed() < BACKOFF);
        let emfile = std::io::Error::from_raw_os_error(Errno::MFILE.raw_os_error());
        backoff.failed("test", &emfile).await;
        backoff.failed("test", &emfile).await;
        assert!(started.elapsed() >= 2 * BACKOFF);
        assert!(backoff.exhausted);
        backoff.accepted("test");
        assert!(!backoff.exhausted);
    }
}
