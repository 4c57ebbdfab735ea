//! The seed scenario's consumer in Rust: joins `my-consumer-group`, reads `user-activity`
//! from the earliest offset and prints every record's topic, partition, offset, key and value
//! (the JSON click events `examples/producer.rs` sends).
//!
//! ```text
//! cargo run -p weir-client --example consumer [bootstrap servers, default localhost:9092]
//! ```

use weir_client::consumer::{Consumer, ConsumerConfig, OffsetReset};

#[tokio::main]
async fn main() -> weir_client::Result<()> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "localhost:9092".to_string());
    let mut config = ConsumerConfig::new(&bootstrap, "my-consumer-group");
    // Start at the earliest record when the group has no committed offset yet.
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::connect(config).await?;
    consumer.subscribe(&["user-activity"])?;
    println!("Waiting for messages...");
    loop {
        let record = consumer.recv().await?;
        println!(
            "Received: Topic={}, Partition={}, Offset={}, Key={}, Value={}",
            record.topic,
            record.partition,
            record.offset,
            text(record.key.as_deref()),
            text(record.value.as_deref()),
        );
    }
}

/// Bytes as text, `None` for null (as the Python consumer prints it).
fn text(bytes: Option<&[u8]>) -> String {
    bytes.map_or_else(
        || "None".to_string(),
        |b| String::from_utf8_lossy(b).into_owned(),
    )
}
