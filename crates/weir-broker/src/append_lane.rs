//! A connection's append lane: its acks=all Produce appends, run in request order on the
//! blocking pool by one task that drains whatever has queued up.
//!
//! Why: librdkafka's default (`max.in.flight.requests.per.connection` = 1,000,000,
//! `linger.ms` = 0) sends every record as its own request, tens of thousands a second on one
//! connection. A blocking-pool task per request costs three thread wake-ups (pool thread in,
//! connection task back, response task), and on two cores the wake-ups, not the appends, were
//! the work: p99 64 ms at 20,000 records/s. The lane hands a job to a running drain task
//! without waking anything, so under load one wake-up carries many appends, and the
//! connection reads its next request while the previous one is appended.
//!
//! Order is the lane's contract: jobs run one at a time in submission order, so an idempotent
//! producer's pipelined batches reach the log in the order sent. Any other request on the
//! connection waits for the lane to be [`AppendLane::idle`] first, so it sees every append
//! submitted before it, as if the requests were handled one by one.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::watch;

type Job = Box<dyn FnOnce() + Send>;

/// See the module docs.
pub(crate) struct AppendLane {
    shared: Arc<Shared>,
    /// Jobs submitted so far.
    submitted: u64,
    done: watch::Receiver<u64>,
}

struct Shared {
    state: Mutex<State>,
    /// Jobs finished (run, or panicked), in submission order.
    done: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Whether a drain task is running (it takes every job queued before it stops).
    draining: bool,
}

impl AppendLane {
    pub(crate) fn new() -> Self {
        let (done, receiver) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                done,
            }),
            submitted: 0,
            done: receiver,
        }
    }

    /// Queues `job` behind the jobs submitted before it; it runs on the blocking pool.
    pub(crate) fn submit(&mut self, job: impl FnOnce() + Send + 'static) {
        self.submitted += 1;
        let start = {
            let mut state = self.shared.state.lock();
            state.jobs.push_back(Box::new(job));
            !std::mem::replace(&mut state.draining, true)
        };
        if start {
            let shared = self.shared.clone();
            // A pool that refuses the task (the runtime is stopping) drops it and with it the
            // jobs' result senders: their requests fail and the connection closes.
            drop(crate::blocking::spawn(move || shared.drain()));
        }
    }

    /// Waits until every job submitted so far has run.
    pub(crate) async fn idle(&mut self) {
        let submitted = self.submitted;
        if *self.done.borrow() >= submitted {
            return;
        }
        // The sender lives in `shared`, which `self` holds: the wait cannot fail.
        let _ = self.done.wait_for(|done| *done >= submitted).await;
    }
}

impl Shared {
    fn drain(&self) {
        loop {
            let job = {
                let mut state = self.state.lock();
                match state.jobs.pop_front() {
                    Some(job) => job,
                    None => {
                        state.draining = false;
                        return;
                    }
                }
            };
            // A job that panics loses only its own request (its result sender is dropped, so
            // the connection closes); the lane keeps running the others and counting.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            self.done.send_modify(|done| *done += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_run_in_submission_order_and_idle_waits_for_them() {
        let mut lane = AppendLane::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        for i in 0..1000 {
            let order = order.clone();
            lane.submit(move || {
                if i % 100 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                order.lock().push(i);
            });
        }
        lane.idle().await;
        assert_eq!(*order.lock(), (0..1000).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_does_not_stop_the_lane() {
        let mut lane = AppendLane::new();
        let ran = Arc::new(AtomicUsize::new(0));
        lane.submit(|| panic!("injected"));
        let counted = ran.clone();
        lane.submit(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        lane.idle().await;
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}
