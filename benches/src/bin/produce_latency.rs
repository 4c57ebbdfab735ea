//! Produce latency at a fixed offered rate, measured with librdkafka (the `rdkafka` crate):
//! what issue 11's latency target is about ("p99 ≤ 5 ms up to half of peak throughput").
//!
//! One producer sends `SIZE`-byte single records (`linger.ms=0`) on a fixed schedule of
//! `RATE`/s for `SECONDS`; a record's latency is from its `produce()` call to its delivery
//! report. The schedule is absolute (record *i* is due at start + *i*/RATE), so a stall is
//! caught up rather than hidden, and the sending thread sleeps between records instead of
//! spinning: on a 2-core machine a spinning client would take the cores the broker needs, and
//! the figure would measure the client.
//!
//! ```text
//! produce-latency BOOTSTRAP TOPIC RATE SECONDS [IN_FLIGHT] [ACKS] [SIZE]
//! ```
//!
//! IN_FLIGHT is `max.in.flight.requests.per.connection` (default 5), ACKS `acks` (default
//! `all`), SIZE the value size (default 1024). Prints one line: `rate=… achieved=…
//! acknowledged_per_s=… p50_ms=… p99_ms=… p999_ms=… max_ms=… errors=… queue_full=…
//! unacknowledged=…`, where `achieved` is the rate records were handed to librdkafka and
//! `acknowledged_per_s` the rate they were acknowledged (from the first send to the end of
//! the final flush): with RATE above what the broker sustains, the latter is the peak.
//!
//! Two switches for finding where a tail comes from: `PRODUCE_LATENCY_TIMELINE` prints the
//! slowest record of each 100 ms of the run to stderr (one stall or a steady tail?), and
//! `PRODUCE_LATENCY_NODELAY` sets librdkafka's `socket.nagle.disable`.

use parking_lot::Mutex;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::ThreadedProducer;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Records at the start that warm the connection and metadata up and are not measured.
const WARM_UP: usize = 200;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bootstrap, topic, rate, seconds, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: produce-latency BOOTSTRAP TOPIC RATE SECONDS [IN_FLIGHT] [ACKS] [SIZE]".into(),
        );
    };
    let rate: u64 = rate.parse()?;
    let seconds: u64 = seconds.parse()?;
    let in_flight: u32 = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let acks = rest.get(1).map_or("all", String::as_str);
    let size: usize = rest.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1024);
    if rate == 0 || seconds == 0 {
        return Err("RATE and SECONDS must be positive".into());
    }
    let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .set("acks", acks)
        .set(
            "max.in.flight.requests.per.connection",
            in_flight.to_string(),
        )
        .set("queue.buffering.max.messages", "100000")
        .set("message.timeout.ms", "60000")
        .set(
            "socket.nagle.disable",
            if std::env::var_os("PRODUCE_LATENCY_NODELAY").is_some() {
                "true"
            } else {
                "false"
            },
        )
        .create_with_context(Deliveries::default())?;
    let value = vec![b'x'; size];

    for i in 0..WARM_UP {
        send(&producer, topic, i, &value, false)?;
    }
    producer.flush(Duration::from_secs(30))?;
    producer.context().reset();

    let count = usize::try_from(rate.saturating_mul(seconds))?;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut sent = 0usize;
    let mut queue_full = false;
    for i in 0..count {
        let due = start + interval.mul_f64(i as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if !send(&producer, topic, i, &value, true)? {
            queue_full = true;
            break;
        }
        sent += 1;
    }
    let send_s = start.elapsed().as_secs_f64();
    let flushed = producer.flush(Duration::from_secs(60));
    let total_s = start.elapsed().as_secs_f64();
    let unacknowledged = producer.in_flight_count();
    let deliveries = producer.context();
    let samples = std::mem::take(&mut *deliveries.latencies_ms.lock());
    if std::env::var_os("PRODUCE_LATENCY_TIMELINE").is_some() {
        let offsets: Vec<(f64, f64)> = samples
            .iter()
            .map(|(at, ms)| (at.saturating_duration_since(start).as_secs_f64(), *ms))
            .collect();
        print_timeline(&offsets);
    }
    let mut latencies: Vec<f64> = samples.into_iter().map(|(_, ms)| ms).collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "rate={rate} achieved={:.0} acknowledged_per_s={:.0} p50_ms={:.3} p99_ms={:.3} \
         p999_ms={:.3} max_ms={:.3} errors={} queue_full={queue_full} \
         unacknowledged={unacknowledged}{}",
        sent as f64 / send_s,
        latencies.len() as f64 / total_s,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 99.9),
        latencies.last().copied().unwrap_or(f64::NAN),
        deliveries.errors.load(Ordering::Relaxed),
        if flushed.is_err() {
            " flush=timed-out"
        } else {
            ""
        },
    );
    Ok(())
}

/// Sends record `i`; false when librdkafka's queue is full (the rate is not held).
fn send(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    i: usize,
    value: &[u8],
    measured: bool,
) -> Result<bool> {
    let key = i.to_string();
    let sent_at = Box::new(Sent {
        at: Instant::now(),
        measured,
    });
    let record = BaseRecord::with_opaque_to(topic, sent_at)
        .key(key.as_bytes())
        .payload(value);
    match producer.send(record) {
        Ok(()) => Ok(true),
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Ok(false),
        Err((e, _)) => Err(e.into()),
    }
}

/// When a record was handed to librdkafka, and whether it counts.
struct Sent {
    at: Instant,
    measured: bool,
}

/// Where in the run the slow records were: with `PRODUCE_LATENCY_TIMELINE` set, the slowest
/// record of each 100 ms of the schedule goes to stderr (offset into the run, latency), which
/// tells a stall (one window) from a steady tail (every window).
fn print_timeline(samples: &[(f64, f64)]) {
    let mut worst: std::collections::BTreeMap<u64, f64> = std::collections::BTreeMap::new();
    for &(offset_s, latency_ms) in samples {
        let slot = worst.entry((offset_s * 10.0) as u64).or_insert(0.0);
        *slot = slot.max(latency_ms);
    }
    for (slot, latency_ms) in worst {
        eprintln!("t={:.1}s max_ms={latency_ms:.2}", slot as f64 / 10.0);
    }
}

/// Delivery reports, collected on librdkafka's polling thread.
#[derive(Default)]
struct Deliveries {
    /// When each measured record was sent, and its latency.
    latencies_ms: Mutex<Vec<(Instant, f64)>>,
    errors: AtomicU64,
}

impl Deliveries {
    fn reset(&self) {
        self.latencies_ms.lock().clear();
        self.errors.store(0, Ordering::Relaxed);
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Sent>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Sent>) {
        if !sent.measured {
            return;
        }
        match result {
            Ok(_) => self
                .latencies_ms
                .lock()
                .push((sent.at, sent.at.elapsed().as_secs_f64() * 1000.0)),
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The `p`th percentile (nearest rank) of sorted samples; NaN when there are none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
