//! `weir produce TOPIC`: each line of stdin or a file becomes a record.

use crate::args::{CompressionArg, ProduceArgs};
use crate::error::{Context, Error};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::VecDeque;
use std::time::Instant;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use weir_client::producer::{Compression, Delivery, Producer, ProducerConfig, ProducerRecord};

/// Deliveries awaited at most at once: enough to keep batches full, bounded so a large file
/// does not hold every record's outcome in memory.
const IN_FLIGHT: usize = 10_000;

pub(crate) async fn run(args: ProduceArgs) -> Result<(), Error> {
    let mut config = ProducerConfig::new(crate::client_config(&args.connect, true));
    config.compression = match args.compression {
        CompressionArg::None => Compression::None,
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Snappy => Compression::Snappy,
        CompressionArg::Lz4 => Compression::Lz4,
        CompressionArg::Zstd => Compression::Zstd,
    };
    // A topic that does not exist (and is not auto-created) fails within --timeout-ms.
    config.max_block = config.client.request_timeout;
    config
        .set("acks", &args.acks)
        .map_err(|e| Error::Usage(e.to_string()))?;
    let separator = args.key_separator.as_deref().map(unescape);
    if separator.as_deref() == Some("") {
        return Err(Error::Usage(
            "--key-separator must not be empty".to_string(),
        ));
    }

    let (reader, progress): (Box<dyn AsyncBufRead + Unpin>, Option<ProgressBar>) = match &args.file
    {
        Some(path) => {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|source| Error::Io {
                    action: format!("cannot open {}", path.display()),
                    source,
                })?;
            let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
            // Drawn on stderr, and only when it is a terminal.
            let bar = ProgressBar::new(size).with_style(
                ProgressStyle::with_template(
                    "{bar:30} {binary_bytes}/{binary_total_bytes} {msg} [{elapsed}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            (Box::new(BufReader::new(file)), Some(bar))
        }
        None => (Box::new(BufReader::new(tokio::io::stdin())), None),
    };
    let source_name = args
        .file
        .as_ref()
        .map_or_else(|| "stdin".to_string(), |p| p.display().to_string());

    let client = crate::connect(&args.connect, true).await?;
    let producer = Producer::from_client(client, config)
        .await
        .context(|| format!("cannot start a producer for {}", args.topic))?;

    let started = Instant::now();
    // Lines as bytes: a value need not be UTF-8.
    let mut lines = reader.split(b'\n');
    let mut deliveries: VecDeque<Delivery> = VecDeque::new();
    let mut count: u64 = 0;
    let mut bytes_read: u64 = 0;
    loop {
        let line = lines.next_segment().await.map_err(|source| Error::Io {
            action: format!("cannot read {source_name}"),
            source,
        })?;
        let Some(mut line) = line else { break };
        count += 1;
        bytes_read += line.len() as u64 + 1;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let mut record = ProducerRecord::new(args.topic.clone());
        match &separator {
            Some(sep) => {
                let Some(at) = find(&line, sep.as_bytes()) else {
                    return Err(Error::Usage(format!(
                        "line {count} of {source_name} has no key separator {sep:?}"
                    )));
                };
                let line = Bytes::from(line);
                record = record
                    .key(line.slice(..at))
                    .value(line.slice(at + sep.len()..));
            }
            None => record = record.value(line),
        }
        if let Some(partition) = args.partition {
            record = record.partition(partition);
        }
        for (k, v) in &args.headers {
            record = record.header(
                Bytes::copy_from_slice(k.as_bytes()),
                Some(Bytes::copy_from_slice(v.as_bytes())),
            );
        }
        let delivery = producer
            .enqueue(record)
            .await
            .context(|| format!("cannot send record {count} to {}", args.topic))?;
        deliveries.push_back(delivery);
        if deliveries.len() >= IN_FLIGHT
            && let Some(oldest) = deliveries.pop_front()
        {
            oldest
                .await
                .context(|| format!("cannot produce to {}", args.topic))?;
        }
        if let Some(bar) = &progress
            && count % 1000 == 0
        {
            bar.set_position(bytes_read);
            bar.set_message(format!(
                "{count} records, {:.0} records/s",
                rate(count, started)
            ));
        }
    }
    producer.flush().await;
    for delivery in deliveries {
        delivery
            .await
            .context(|| format!("cannot produce to {}", args.topic))?;
    }
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    eprintln!(
        "produced {count} record{} to {} in {:.2}s ({:.0} records/s)",
        if count == 1 { "" } else { "s" },
        args.topic,
        started.elapsed().as_secs_f64(),
        rate(count, started)
    );
    Ok(())
}

fn rate(count: u64, started: Instant) -> f64 {
    let secs = started.elapsed().as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `\t` for a tab, as shells make it awkward to type one.
fn unescape(separator: &str) -> String {
    separator.replace("\\t", "\t").replace("\\n", "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_split_at_their_first_occurrence() {
        assert_eq!(find(b"k:v:w", b":"), Some(1));
        assert_eq!(find(b"k::v", b"::"), Some(1));
        assert_eq!(find(b"kv", b":"), None);
        assert_eq!(unescape(r"\t"), "\t");
    }
}
