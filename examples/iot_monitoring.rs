//! IoT monitoring on weir-streams: a sliding 30-second average temperature per sensor
//! (sliding windows: one window per distinct set of readings, so the average follows every
//! reading), written to `sensor-averages`, and an alert stream on `sensor-alerts` whenever a
//! sensor's average is above a threshold.
//!
//! ```text
//! cargo run -p weir-streams --example iot_monitoring                  # the application
//! cargo run -p weir-streams --example iot_monitoring -- produce       # sample input
//! ```
//!
//! Both take the bootstrap servers as a last argument (default localhost:9092); the
//! application also takes `--threshold DEGREES` first (default 30). Readings are JSON values
//! on `sensor-readings`: `{"sensor_id": "s1", "temperature": 21.5}` (key ignored; an optional
//! `timestamp` in seconds since the epoch is the event time).

#[path = "streams_common/mod.rs"]
mod streams_common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use weir_client::ClientConfig;
use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};
use weir_streams::{
    Grouped, JsonSerde, KafkaStreams, Materialized, Nullable, Serde, SlidingWindows,
    StreamsBuilder, StreamsConfig, StringSerde,
};

/// A sensor reading as written to `sensor-readings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reading {
    sensor_id: String,
    temperature: f64,
    /// Seconds since the epoch; the record's own timestamp when missing.
    #[serde(default)]
    timestamp: Option<f64>,
}

/// A running sum, for the average.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Sum {
    count: i64,
    total: f64,
}

/// One sensor's average over one window, as written to both output topics.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Average {
    sensor_id: String,
    window_start: i64,
    window_end: i64,
    readings: i64,
    average: f64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let produce = args.first().is_some_and(|arg| arg == "produce");
    if produce {
        args.remove(0);
    }
    let mut threshold = 30.0;
    if args.first().is_some_and(|arg| arg == "--threshold") {
        threshold = args.get(1).ok_or("--threshold needs a value")?.parse()?;
        args.drain(..2);
    }
    let bootstrap = args
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost:9092".to_string());
    if produce {
        return produce_sample(&bootstrap).await;
    }

    // Built once per task (input partition) by the runtime.
    let topology = move || {
        let builder = StreamsBuilder::new();
        let averages = builder
            .stream_with_timestamp_extractor(
                "sensor-readings",
                Nullable(StringSerde),
                JsonSerde::<Reading>::new(),
                |_: &Option<String>, reading: &Reading, record_timestamp: i64| {
                    reading
                        .timestamp
                        .map_or(record_timestamp, |seconds| (seconds * 1000.0) as i64)
                },
            )
            .group_by_with(
                |_, reading| reading.sensor_id.clone(),
                Grouped::key_serde(StringSerde),
            )
            .windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(
                Duration::from_secs(30),
                Duration::from_secs(5),
            ))
            .materialized_as("temperature-sums")
            .aggregate_with(
                Sum::default,
                |_, reading, sum| Sum {
                    count: sum.count + 1,
                    total: sum.total + reading.temperature,
                },
                // The windows are logged to a changelog topic, as JSON.
                Materialized::default().with_value_serde(JsonSerde::<Sum>::new()),
            )
            .to_stream()
            .flat_map(|windowed, sum| {
                sum.filter(|sum| sum.count > 0).map(|sum| {
                    let average = Average {
                        sensor_id: windowed.key.clone(),
                        window_start: windowed.window.start,
                        window_end: windowed.window.end,
                        readings: sum.count,
                        average: sum.total / sum.count as f64,
                    };
                    (windowed.key, average)
                })
            });
        averages.to("sensor-averages", StringSerde, JsonSerde::<Average>::new());
        averages
            .filter(move |_, average| average.average > threshold)
            .peek(|sensor, average| {
                println!(
                    "ALERT {sensor}: average {:.2} over {} reading(s) in [{}, {}] ms",
                    average.average, average.readings, average.window_start, average.window_end
                );
            })
            .to("sensor-alerts", StringSerde, JsonSerde::<Average>::new());

        builder.build()
    };

    streams_common::create_input_topics(&bootstrap, &["sensor-readings"]).await?;
    let mut config = StreamsConfig::new("iot-monitoring", &bootstrap);
    config.commit_interval = Duration::from_secs(1);
    let streams = KafkaStreams::new(topology, config).await?;
    println!(
        "Averaging sensor-readings over sliding 30 s windows, alerting above {threshold} (Ctrl-C to stop)..."
    );
    streams_common::run_until_ctrl_c(streams, "reading(s)").await
}

/// Readings from three sensors a second apart: s1 steady, s2 heating up past 30 degrees, s3
/// cool.
async fn produce_sample(bootstrap: &str) -> Result<(), Box<dyn std::error::Error>> {
    let producer = Producer::connect(ProducerConfig::new(ClientConfig::new(bootstrap))).await?;
    let serde = JsonSerde::<Reading>::new();
    let mut deliveries = Vec::new();
    for step in 0..10 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        for (sensor, temperature) in [
            ("s1", 21.0 + f64::from(step % 2)),
            ("s2", 24.0 + 2.0 * f64::from(step)),
            ("s3", 15.5),
        ] {
            let reading = Reading {
                sensor_id: sensor.to_string(),
                temperature,
                timestamp: Some(now),
            };
            let record = ProducerRecord::new("sensor-readings").value(serde.serialize(&reading)?);
            deliveries.push(producer.enqueue(record).await?);
            println!("Sent {sensor}: {temperature:.1}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    producer.flush().await;
    for delivery in deliveries {
        delivery.await?;
    }
    println!("Sample sent: expect alerts for s2 once its average passes 30.");
    Ok(())
}
