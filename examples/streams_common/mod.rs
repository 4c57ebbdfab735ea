//! What the weir-streams examples share: creating their input topics, and running until
//! Ctrl-C.

use weir_streams::KafkaStreams;

/// Creates the input topics if they do not exist yet (3 partitions each): the runtime refuses
/// to start on missing source topics, as Kafka Streams does.
pub(crate) async fn create_input_topics(
    bootstrap: &str,
    topics: &[&str],
) -> Result<(), Box<dyn std::error::Error>> {
    let admin =
        weir_client::admin::Admin::connect(weir_client::ClientConfig::new(bootstrap)).await?;
    let new: Vec<_> = topics
        .iter()
        .map(|topic| weir_client::admin::NewTopic::new(*topic, 3))
        .collect();
    for (topic, created) in admin.create_topics(&new).await? {
        if created.is_ok() {
            println!("created topic {topic}");
        }
    }
    Ok(())
}

/// Runs `streams` until Ctrl-C, closes it, and says how many late `records` were dropped.
pub(crate) async fn run_until_ctrl_c(
    mut streams: KafkaStreams,
    records: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    streams
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let late = streams.metrics().dropped_late;
    streams.close().await?;
    println!("Stopped; {late} late {records} dropped.");
    Ok(())
}
