//! Broker metrics, exposed by the admin HTTP port in the OpenMetrics text format through
//! `prometheus-client`.
//!
//! Counters are cheap to bump from any task: connections and per-API request statistics are
//! recorded by `connection.rs`; handlers that know which topic bytes belong to call
//! [`Metrics::bytes_in`] and [`Metrics::bytes_out`]. Log end offsets are read from the logs when
//! `/metrics` is scraped, so nothing is kept for them here.

use crate::state::Broker;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::fmt::Write as _;
use std::time::Duration;
use weir_protocol::ApiKey;

/// The `Content-Type` of [`render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the request latency histogram buckets; `+Inf` is implied.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 5.0,
];

/// Labels of the per-API metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
}

/// Labels of the per-topic metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TopicLabels {
    topic: Escaped,
}

/// Labels of the per-partition metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PartitionLabels {
    topic: Escaped,
    partition: i32,
}

/// A label value from outside (a topic name), escaped as the exposition format requires:
/// prometheus-client writes label values verbatim. Valid Kafka topic names need no escaping,
/// but a broken name must not break the whole scrape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Escaped(String);

impl EncodeLabelValue for Escaped {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

impl TopicLabels {
    fn new(topic: &str) -> Self {
        Self {
            topic: Escaped(topic.to_string()),
        }
    }
}

/// `weir_connections_total`: a counter exposed with the OpenMetrics type `unknown`. As a
/// `counter` its family would be named `weir_connections`, the name of the open-connections
/// gauge, and family names must be unique (strict parsers reject the page); `unknown` keeps
/// both sample names as they were.
#[derive(Debug, Clone, Default)]
struct AcceptedConnections(Counter);

impl EncodeMetric for AcceptedConnections {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        // A gauge's sample carries the family name with no suffix.
        encoder.encode_gauge(&self.0.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Unknown
    }
}

/// A latency histogram with [`LATENCY_BUCKETS`].
fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The broker's counters, registered in one [`Registry`]. A counter's name there lacks the
/// `_total` its samples carry (OpenMetrics adds it).
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<ApiLabels, Counter>,
    request_duration: Family<ApiLabels, Histogram, fn() -> Histogram>,
    request_bytes: Family<ApiLabels, Counter>,
    response_bytes: Family<ApiLabels, Counter>,
    topic_bytes_in: Family<TopicLabels, Counter>,
    topic_bytes_out: Family<TopicLabels, Counter>,
    connections_open: Gauge,
    connections_total: AcceptedConnections,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Self {
            registry: Registry::default(),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
            topic_bytes_in: Family::default(),
            topic_bytes_out: Family::default(),
            connections_open: Gauge::default(),
            connections_total: AcceptedConnections::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "weir_requests",
            "Requests handled, by API",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "weir_request_duration",
            "Time from a request's decode to its response's encode, by API",
            Unit::Seconds,
            metrics.request_duration.clone(),
        );
        registry.register(
            "weir_request_bytes",
            "Request frame bytes received, by API",
            metrics.request_bytes.clone(),
        );
        registry.register(
            "weir_response_bytes",
            "Response frame bytes sent, by API",
            metrics.response_bytes.clone(),
        );
        registry.register(
            "weir_topic_bytes_in",
            "Record bytes appended, by topic",
            metrics.topic_bytes_in.clone(),
        );
        registry.register(
            "weir_topic_bytes_out",
            "Record bytes fetched, by topic",
            metrics.topic_bytes_out.clone(),
        );
        registry.register(
            "weir_connections",
            "Open client connections",
            metrics.connections_open.clone(),
        );
        registry.register(
            "weir_connections_total",
            "Client connections accepted (a counter)",
            metrics.connections_total.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
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
        let labels = ApiLabels { api: api.name() };
        self.requests.get_or_create(&labels).inc();
        self.request_bytes
            .get_or_create(&labels)
            .inc_by(bytes_in as u64);
        self.response_bytes
            .get_or_create(&labels)
            .inc_by(bytes_out as u64);
        self.request_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts record bytes appended to `topic` (for handlers that know the topic: Produce).
    pub(crate) fn bytes_in(&self, topic: &str, bytes: u64) {
        self.topic_bytes_in
            .get_or_create(&TopicLabels::new(topic))
            .inc_by(bytes);
    }

    /// Counts record bytes served from `topic` (for handlers that know the topic: Fetch).
    pub(crate) fn bytes_out(&self, topic: &str, bytes: u64) {
        self.topic_bytes_out
            .get_or_create(&TopicLabels::new(topic))
            .inc_by(bytes);
    }

    /// Forgets a deleted topic's byte counters.
    pub(crate) fn forget_topic(&self, topic: &str) {
        let labels = TopicLabels::new(topic);
        self.topic_bytes_in.remove(&labels);
        self.topic_bytes_out.remove(&labels);
    }

    /// A client connection was accepted.
    pub(crate) fn connection_opened(&self) {
        self.connections_open.inc();
        self.connections_total.0.inc();
    }

    /// A client connection ended.
    pub(crate) fn connection_closed(&self) {
        self.connections_open.dec();
    }
}

/// The OpenMetrics text exposition of every metric ([`CONTENT_TYPE`]).
pub(crate) fn render(broker: &Broker) -> String {
    let log_end_offsets = Family::<PartitionLabels, Gauge>::default();
    for (tp, log) in broker.partitions.all() {
        log_end_offsets
            .get_or_create(&PartitionLabels {
                topic: Escaped(tp.topic.clone()),
                partition: tp.partition,
            })
            .set(log.log_end_offset());
    }
    let mut per_scrape = Registry::default();
    per_scrape.register(
        "weir_log_end_offset",
        "The offset the next record appended gets, by partition",
        log_end_offsets,
    );
    let mut out = String::with_capacity(4096);
    // Writing into a String cannot fail, and every label value is a string or an integer.
    let _ = encode_registry(&mut out, &broker.metrics.registry)
        .and_then(|()| encode_registry(&mut out, &per_scrape))
        .and_then(|()| encode_eof(&mut out));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(metrics: &Metrics) -> String {
        let mut out = String::new();
        encode_registry(&mut out, &metrics.registry).unwrap();
        out
    }

    #[test]
    fn latency_lands_in_its_bucket() {
        let metrics = Metrics::default();
        metrics.request(ApiKey::Metadata, 10, 20, Duration::from_micros(300));
        metrics.request(ApiKey::Metadata, 10, 20, Duration::from_secs(60));
        let text = exposition(&metrics);
        for expected in [
            "weir_requests_total{api=\"Metadata\"} 2\n",
            "weir_request_bytes_total{api=\"Metadata\"} 20\n",
            "weir_response_bytes_total{api=\"Metadata\"} 40\n",
            // 0.3 ms is in the 0.5 ms bucket (and every later one), 60 s only in +Inf.
            "weir_request_duration_seconds_bucket{le=\"0.00025\",api=\"Metadata\"} 0\n",
            "weir_request_duration_seconds_bucket{le=\"0.0005\",api=\"Metadata\"} 1\n",
            "weir_request_duration_seconds_bucket{le=\"5.0\",api=\"Metadata\"} 1\n",
            "weir_request_duration_seconds_bucket{le=\"+Inf\",api=\"Metadata\"} 2\n",
            "weir_request_duration_seconds_count{api=\"Metadata\"} 2\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn connections_and_topics_keep_their_names() {
        let metrics = Metrics::default();
        metrics.connection_opened();
        metrics.connection_opened();
        metrics.connection_closed();
        metrics.bytes_in("a\"b\\c", 5);
        metrics.bytes_out("gone", 7);
        metrics.forget_topic("gone");
        let text = exposition(&metrics);
        for expected in [
            "weir_connections 1\n",
            "weir_connections_total 2\n",
            "weir_topic_bytes_in_total{topic=\"a\\\"b\\\\c\"} 5\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("gone"), "{text}");
    }
}
