//! Click analytics on weir-streams: actions per user per 10-second tumbling window, from the
//! JSON click events on `user-activity` (what `../shared/seed-example/producer.py` and
//! `examples/producer.rs` send), printed as they update and written to
//! `user-activity-counts` as JSON keyed by user.
//!
//! ```text
//! cargo run -p weir-streams --example click_analytics [bootstrap servers, default localhost:9092]
//! ```
//!
//! Ctrl-C stops it after committing what it processed.

#[path = "streams_common/mod.rs"]
mod streams_common;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_streams::{
    Grouped, JsonSerde, KafkaStreams, Nullable, StreamsBuilder, StreamsConfig, StringSerde,
    TumblingWindows,
};

/// A click event as the seed producer writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Click {
    user_id: String,
    /// Seconds since the epoch, as Python's `time.time()`; the record's own timestamp when
    /// missing.
    #[serde(default)]
    timestamp: Option<f64>,
}

/// One user's action count in one window, as written to `user-activity-counts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WindowCount {
    user_id: String,
    window_start: i64,
    window_end: i64,
    actions: i64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:9092".to_string());
    let window = Duration::from_secs(10);

    // Built once per task (input partition) by the runtime.
    let topology = move || {
        let builder = StreamsBuilder::new();
        builder
            .stream_with_timestamp_extractor(
                "user-activity",
                // The seed producer sends no keys.
                Nullable(StringSerde),
                JsonSerde::<Click>::new(),
                // Event time is when the click happened, not when it reached the broker.
                |_: &Option<String>, click: &Click, record_timestamp: i64| {
                    click
                        .timestamp
                        .map_or(record_timestamp, |seconds| (seconds * 1000.0) as i64)
                },
            )
            .group_by_with(
                |_, click| click.user_id.clone(),
                Grouped::key_serde(StringSerde),
            )
            // Clicks up to 5 s late still count in their window.
            .windowed_by(TumblingWindows::of(window).grace(Duration::from_secs(5)))
            .materialized_as("actions-per-user")
            .count()
            .to_stream()
            .map(|windowed, actions| {
                let count = WindowCount {
                    user_id: windowed.key.clone(),
                    window_start: windowed.window.start,
                    window_end: windowed.window.end,
                    // Time-window counts are never deleted.
                    actions: actions.unwrap_or_default(),
                };
                (windowed.key, count)
            })
            .peek(|user, count| {
                println!(
                    "{user}: {} action(s) in [{}, {}) ms",
                    count.actions, count.window_start, count.window_end
                );
            })
            .to(
                "user-activity-counts",
                StringSerde,
                JsonSerde::<WindowCount>::new(),
            );

        builder.build()
    };

    streams_common::create_input_topics(&bootstrap, &["user-activity"]).await?;
    let mut config = StreamsConfig::new("click-analytics", &bootstrap);
    config.commit_interval = Duration::from_secs(1);
    let streams = KafkaStreams::new(topology, config).await?;
    println!("Counting actions per user per 10 s window on user-activity (Ctrl-C to stop)...");
    streams_common::run_until_ctrl_c(streams, "click(s)").await
}
