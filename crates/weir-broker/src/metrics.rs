//! Broker metrics, rendered in the Prometheus text format by the admin HTTP port.
//!
//! Counters are cheap to bump from any task: connections and per-API request statistics are
//! recorded by `connection.rs`; handlers that know which topic bytes belong to call
//! [`Metrics::bytes_in`] and [`Metrics::bytes_out`]. Log end offsets are read from the logs when
//! `/metrics` is scraped, so nothing is kept for them here.

use crate::state::Broker;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use weir_protocol::ApiKey;

/// Upper bounds (seconds) of the request latency histogram buckets; `+Inf` is implied.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 5.0,
];

/// Request statistics of one API.
#[derive(Debug, Default, Clone)]
struct ApiStats {
    name: &'static str,
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// Requests per latency bucket (not cumulative; the last slot is `+Inf`).
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    latency_sum: Duration,
}

/// Bytes produced to and fetched from one topic.
#[derive(Debug, Default, Clone, Copy)]
struct TopicBytes {
    bytes_in: u64,
    bytes_out: u64,
}

/// The broker's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    apis: Mutex<BTreeMap<i16, ApiStats>>,
    topics: Mutex<BTreeMap<String, TopicBytes>>,
    connections_open: AtomicI64,
    connections_total: AtomicU64,
}

impl Metrics {
    /// Records one handled request: its frame size, its response size (0 when none was sent)
    /// and how long handling took.
    pub(crate) fn request(
        &self,
        api: ApiKey,
        bytes_in: usize,
        bytes_out: usize,
        elapsed: Duration,
    ) {
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        let mut apis = self.apis.lock();
        let stats = apis.entry(api as i16).or_default();
        stats.name = api.name();
        stats.requests += 1;
        stats.bytes_in += bytes_in as u64;
        stats.bytes_out += bytes_out as u64;
        if let Some(slot) = stats.buckets.get_mut(bucket) {
            *slot += 1;
        }
        stats.latency_sum += elapsed;
    }

    /// Counts record bytes appended to `topic` (for handlers that know the topic: Produce).
    #[allow(
        dead_code,
        reason = "for the Produce and Fetch handlers; `expect` would fail once they call it"
    )]
    pub(crate) fn bytes_in(&self, topic: &str, bytes: u64) {
        self.topic(topic, |t| t.bytes_in += bytes);
    }

    /// Counts record bytes served from `topic` (for handlers that know the topic: Fetch).
    #[allow(
        dead_code,
        reason = "for the Produce and Fetch handlers; `expect` would fail once they call it"
    )]
    pub(crate) fn bytes_out(&self, topic: &str, bytes: u64) {
        self.topic(topic, |t| t.bytes_out += bytes);
    }

    #[allow(
        dead_code,
        reason = "for the Produce and Fetch handlers; `expect` would fail once they call it"
    )]
    fn topic(&self, topic: &str, change: impl FnOnce(&mut TopicBytes)) {
        let mut topics = self.topics.lock();
        match topics.get_mut(topic) {
            Some(t) => change(t),
            None => {
                let mut t = TopicBytes::default();
                change(&mut t);
                topics.insert(topic.to_string(), t);
            }
        }
    }

    /// Forgets a deleted topic's byte counters.
    pub(crate) fn forget_topic(&self, topic: &str) {
        self.topics.lock().remove(topic);
    }

    /// A client connection was accepted.
    pub(crate) fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A client connection ended.
    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition of every metric.
pub(crate) fn render(broker: &Broker) -> String {
    let metrics = &broker.metrics;
    let mut out = String::with_capacity(4096);
    // `write!` into a String cannot fail; the results are ignored for that reason.
    let apis: Vec<ApiStats> = metrics.apis.lock().values().cloned().collect();

    out.push_str("# HELP weir_requests_total Requests handled, by API.\n");
    out.push_str("# TYPE weir_requests_total counter\n");
    for s in &apis {
        let _ = writeln!(
            out,
            "weir_requests_total{{api=\"{}\"}} {}",
            s.name, s.requests
        );
    }

    out.push_str("# HELP weir_request_duration_seconds Time from a request's decode to its response's encode, by API.\n");
    out.push_str("# TYPE weir_request_duration_seconds histogram\n");
    for s in &apis {
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(s.buckets.iter()) {
            cumulative += count;
            let _ = writeln!(
                out,
                "weir_request_duration_seconds_bucket{{api=\"{}\",le=\"{bound}\"}} {cumulative}",
                s.name
            );
        }
        let _ = writeln!(
            out,
            "weir_request_duration_seconds_bucket{{api=\"{}\",le=\"+Inf\"}} {}",
            s.name, s.requests
        );
        let _ = writeln!(
            out,
            "weir_request_duration_seconds_sum{{api=\"{}\"}} {}",
            s.name,
            s.latency_sum.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "weir_request_duration_seconds_count{{api=\"{}\"}} {}",
            s.name, s.requests
        );
    }

    out.push_str("# HELP weir_request_bytes_total Request frame bytes received, by API.\n");
    out.push_str("# TYPE weir_request_bytes_total counter\n");
    for s in &apis {
        let _ = writeln!(
            out,
            "weir_request_bytes_total{{api=\"{}\"}} {}",
            s.name, s.bytes_in
        );
    }
    out.push_str("# HELP weir_response_bytes_total Response frame bytes sent, by API.\n");
    out.push_str("# TYPE weir_response_bytes_total counter\n");
    for s in &apis {
        let _ = writeln!(
            out,
            "weir_response_bytes_total{{api=\"{}\"}} {}",
            s.name, s.bytes_out
        );
    }

    let topics: Vec<(String, TopicBytes)> = metrics
        .topics
        .lock()
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    out.push_str("# HELP weir_topic_bytes_in_total Record bytes appended, by topic.\n");
    out.push_str("# TYPE weir_topic_bytes_in_total counter\n");
    for (topic, t) in &topics {
        let _ = writeln!(
            out,
            "weir_topic_bytes_in_total{{topic=\"{}\"}} {}",
            label(topic),
            t.bytes_in
        );
    }
    out.push_str("# HELP weir_topic_bytes_out_total Record bytes fetched, by topic.\n");
    out.push_str("# TYPE weir_topic_bytes_out_total counter\n");
    for (topic, t) in &topics {
        let _ = writeln!(
            out,
            "weir_topic_bytes_out_total{{topic=\"{}\"}} {}",
            label(topic),
            t.bytes_out
        );
    }

    out.push_str("# HELP weir_connections Open client connections.\n");
    out.push_str("# TYPE weir_connections gauge\n");
    let _ = writeln!(
        out,
        "weir_connections {}",
        metrics.connections_open.load(Ordering::Relaxed)
    );
    out.push_str("# HELP weir_connections_total Client connections accepted.\n");
    out.push_str("# TYPE weir_connections_total counter\n");
    let _ = writeln!(
        out,
        "weir_connections_total {}",
        metrics.connections_total.load(Ordering::Relaxed)
    );

    out.push_str(
        "# HELP weir_log_end_offset The offset the next record appended gets, by partition.\n",
    );
    out.push_str("# TYPE weir_log_end_offset gauge\n");
    for (tp, log) in broker.partitions.all() {
        let _ = writeln!(
            out,
            "weir_log_end_offset{{topic=\"{}\",partition=\"{}\"}} {}",
            label(&tp.topic),
            tp.partition,
            log.log_end_offset()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_its_bucket() {
        let metrics = Metrics::default();
        metrics.request(ApiKey::Metadata, 10, 20, Duration::from_micros(300));
        metrics.request(ApiKey::Metadata, 10, 20, Duration::from_secs(60));
        let apis = metrics.apis.lock();
        let stats = apis.get(&(ApiKey::Metadata as i16)).unwrap();
        assert_eq!(stats.requests, 2);
        assert_eq!(stats.bytes_in, 20);
        assert_eq!(stats.buckets[2], 1, "0.3 ms is in the 0.5 ms bucket");
        assert_eq!(
            stats.buckets[LATENCY_BUCKETS.len()],
            1,
            "60 s is only in +Inf"
        );
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
