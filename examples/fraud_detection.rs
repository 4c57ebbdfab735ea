//! Fraud detection on weir-streams: per card, the number and total amount of transactions in
//! one-minute tumbling windows (a windowed aggregation), joined with the card's limits from
//! the `card-limits` table (a stream-table join); a window over either limit raises an alert
//! on `fraud-alerts`.
//!
//! ```text
//! cargo run -p weir-streams --example fraud_detection                 # the application
//! cargo run -p weir-streams --example fraud_detection -- produce      # sample input
//! ```
//!
//! Both take the bootstrap servers as a last argument (default localhost:9092). Inputs are
//! JSON: `transactions` values `{"card_id": "card-1", "amount": 12.5}` (key ignored; an
//! optional `timestamp` in seconds since the epoch is the event time), `card-limits` keyed by
//! card id with values `{"max_count": 3, "max_amount": 500.0}` (a null value deletes the
//! card's limits). Cards without limits get 5 transactions and 1000.0 a minute.

#[path = "streams_common/mod.rs"]
mod streams_common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use weir_client::ClientConfig;
use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};
use weir_streams::{
    Grouped, JsonSerde, KafkaStreams, Materialized, Nullable, Repartitioned, Serde, StreamsBuilder,
    StreamsConfig, StringSerde, TimeWindows,
};

/// A card transaction as written to `transactions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Transaction {
    card_id: String,
    amount: f64,
    /// Seconds since the epoch; the record's own timestamp when missing.
    #[serde(default)]
    timestamp: Option<f64>,
}

/// A card's limits per minute, from `card-limits`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CardLimit {
    max_count: i64,
    max_amount: f64,
}

/// The limits of a card with none in `card-limits`.
const DEFAULT_LIMIT: CardLimit = CardLimit {
    max_count: 5,
    max_amount: 1000.0,
};

/// A card's activity in one window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Activity {
    count: i64,
    amount: f64,
}

/// What `fraud-alerts` receives, keyed by card.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Alert {
    card_id: String,
    window_start: i64,
    window_end: i64,
    count: i64,
    amount: f64,
    max_count: i64,
    max_amount: f64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let produce = args.first().is_some_and(|arg| arg == "produce");
    if produce {
        args.remove(0);
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
        let limits = builder.table(
            "card-limits",
            StringSerde,
            Nullable(JsonSerde::<CardLimit>::new()),
        );
        builder
            .stream_with_timestamp_extractor(
                "transactions",
                Nullable(StringSerde),
                JsonSerde::<Transaction>::new(),
                |_: &Option<String>, tx: &Transaction, record_timestamp: i64| {
                    tx.timestamp
                        .map_or(record_timestamp, |seconds| (seconds * 1000.0) as i64)
                },
            )
            .group_by_with(|_, tx| tx.card_id.clone(), Grouped::key_serde(StringSerde))
            .windowed_by(TimeWindows::of_size_and_grace(
                Duration::from_secs(60),
                Duration::from_secs(5),
            ))
            .materialized_as("activity-per-card")
            .aggregate_with(
                Activity::default,
                |_, tx, activity| Activity {
                    count: activity.count + 1,
                    amount: activity.amount + tx.amount,
                },
                // The windows are logged to a changelog topic, as JSON.
                Materialized::default().with_value_serde(JsonSerde::<Activity>::new()),
            )
            .to_stream()
            // The card becomes the key again, for the join with its limits.
            .flat_map(|windowed, activity| {
                activity.map(|activity| {
                    let window = (windowed.window.start, windowed.window.end);
                    (windowed.key.clone(), (window, activity))
                })
            })
            // The new key must reach the task holding that card's limits.
            .repartition_with(Repartitioned::with(
                StringSerde,
                JsonSerde::<((i64, i64), Activity)>::new(),
            ))
            .left_join_table(&limits, |(window, activity), limit| {
                let limit = limit.unwrap_or(&DEFAULT_LIMIT);
                (activity.count > limit.max_count || activity.amount > limit.max_amount).then(
                    || Alert {
                        card_id: String::new(),
                        window_start: window.0,
                        window_end: window.1,
                        count: activity.count,
                        amount: activity.amount,
                        max_count: limit.max_count,
                        max_amount: limit.max_amount,
                    },
                )
            })
            .flat_map(|card, alert| {
                alert.map(|alert| {
                    let alert = Alert {
                        card_id: card.clone(),
                        ..alert
                    };
                    (card, alert)
                })
            })
            .peek(|card, alert| {
                println!(
                    "ALERT {card}: {} transaction(s), {:.2} in [{}, {}) ms (limits {} / {:.2})",
                    alert.count,
                    alert.amount,
                    alert.window_start,
                    alert.window_end,
                    alert.max_count,
                    alert.max_amount
                );
            })
            .to("fraud-alerts", StringSerde, JsonSerde::<Alert>::new());

        builder.build()
    };

    streams_common::create_input_topics(&bootstrap, &["transactions", "card-limits"]).await?;
    let mut config = StreamsConfig::new("fraud-detection", &bootstrap);
    config.commit_interval = Duration::from_secs(1);
    let streams = KafkaStreams::new(topology, config).await?;
    println!("Watching transactions against card-limits (Ctrl-C to stop)...");
    streams_common::run_until_ctrl_c(streams, "transaction(s)").await
}

/// Limits for two cards, then transactions: card-1 goes over its count, card-2 over its
/// amount, card-3 (default limits) stays within them.
async fn produce_sample(bootstrap: &str) -> Result<(), Box<dyn std::error::Error>> {
    let producer = Producer::connect(ProducerConfig::new(ClientConfig::new(bootstrap))).await?;
    let limits = JsonSerde::<CardLimit>::new();
    let mut deliveries = Vec::new();
    for (card, max_count, max_amount) in [("card-1", 3, 500.0), ("card-2", 10, 2000.0)] {
        let value = limits.serialize(&CardLimit {
            max_count,
            max_amount,
        })?;
        let record = ProducerRecord::new("card-limits").key(card).value(value);
        deliveries.push(producer.enqueue(record).await?);
    }
    // The limits first, so the application's table has them before the transactions.
    producer.flush().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let transactions = JsonSerde::<Transaction>::new();
    let sample = [
        ("card-1", 20.0),
        ("card-3", 99.0),
        ("card-1", 35.5),
        ("card-2", 1200.0),
        ("card-1", 12.0),
        ("card-2", 1300.0),
        ("card-1", 8.25),
        ("card-3", 10.0),
    ];
    for (card, amount) in sample {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let tx = Transaction {
            card_id: card.to_string(),
            amount,
            timestamp: Some(now),
        };
        let record = ProducerRecord::new("transactions").value(transactions.serialize(&tx)?);
        deliveries.push(producer.enqueue(record).await?);
        println!("Sent {card}: {amount:.2}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    producer.flush().await;
    for delivery in deliveries {
        delivery.await?;
    }
    println!("Sample sent: expect alerts for card-1 (count) and card-2 (amount).");
    Ok(())
}
