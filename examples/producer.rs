//! The seed scenario's producer in Rust: ten JSON click events to `user-activity`, one a
//! second, then a flush. Like the seed, records carry no key (the sticky partitioner places
//! them).
//!
//! ```sh
//! cargo run -p weir-client --example producer            # localhost:9092
//! cargo run -p weir-client --example producer -- host:port
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weir_client::ClientConfig;
use weir_client::producer::{Producer, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> weir_client::Result<()> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:9092".to_string());
    let producer = Producer::connect(ProducerConfig::new(ClientConfig::new(&bootstrap))).await?;

    println!("Sending messages...");
    let mut deliveries = Vec::new();
    for i in 0..10 {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let message = format!(
            r#"{{"user_id": "user_{}", "action": "click", "timestamp": {timestamp}}}"#,
            i % 3
        );
        deliveries.push(
            producer
                .enqueue(ProducerRecord::new("user-activity").value(message.clone()))
                .await?,
        );
        println!("Sent: {message}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    producer.flush().await;
    for delivery in deliveries {
        delivery.await?;
    }
    println!("All messages sent.");
    Ok(())
}
