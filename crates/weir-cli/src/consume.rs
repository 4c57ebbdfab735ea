//! `weir consume TOPIC`: prints records, from a chosen start or as a group member.
//!
//! Without `--follow` it stops once every partition it reads has reached the end offset it had
//! when reading started (the high watermark then), so `weir consume t` prints what is there
//! and exits. The check runs against the consumer's position, which moves past transaction
//! markers that are never handed out as records.

use crate::args::{ConsumeArgs, Start};
use crate::error::{Context, Error};
use crate::output::try_print;
use crate::template::RecordFormat;
use std::collections::BTreeMap;
use std::time::Duration;
use weir_client::admin::{Admin, OffsetSpec};
use weir_client::consumer::{Consumer, ConsumerConfig, OffsetReset, TopicPartition};

/// How long `recv` waits before the command checks whether it has caught up.
const IDLE_CHECK: Duration = Duration::from_millis(200);

pub(crate) async fn run(args: ConsumeArgs) -> Result<(), Error> {
    let format = RecordFormat::parse(&args.format).map_err(Error::Usage)?;
    if args.group.is_some() && matches!(args.from, Start::Offset(_) | Start::Timestamp(_)) {
        return Err(Error::Usage(
            "with --group, --from is beginning or end (where a partition without a committed \
             offset starts); move a group's offsets with `weir group seek`"
                .to_string(),
        ));
    }
    // Following, a topic that does not exist yet is waited for (and auto-created where the
    // broker allows it, as any consumer's lookup does): a consumer started before its
    // producer, as in the seed scenario. Otherwise a missing topic is an error at once.
    let client = crate::connect(&args.connect, args.follow).await?;
    let admin = Admin::from_client(client.clone());
    let topic = args.topic.clone();
    let metadata = if args.follow {
        client
            .topic(&topic)
            .await
            .context(|| format!("topic {topic} did not appear"))?
    } else {
        crate::topic::describe_topics(&admin, std::slice::from_ref(&topic))
            .await?
            .pop()
            .ok_or_else(|| Error::Failed(format!("topic {topic} does not exist")))?
    };
    let partitions: Vec<i32> = if args.partition.is_empty() {
        metadata.partitions.iter().map(|p| p.partition).collect()
    } else {
        for p in &args.partition {
            if !metadata.partitions.iter().any(|m| m.partition == *p) {
                return Err(Error::Usage(format!(
                    "topic {topic} has no partition {p} ({} partitions)",
                    metadata.partitions.len()
                )));
            }
        }
        args.partition.clone()
    };

    let mut config = ConsumerConfig {
        client: client.config().clone(),
        group_id: args.group.clone(),
        auto_offset_reset: match args.from {
            Start::End => OffsetReset::Latest,
            _ => OffsetReset::Earliest,
        },
        enable_auto_commit: args.group.is_some(),
        ..ConsumerConfig::default()
    };
    config.client.client_id = "weir-cli".to_string();
    let mut consumer = Consumer::from_client(client.clone(), config)
        .await
        .context(|| format!("cannot start a consumer for {topic}"))?;

    // Where each partition ends now: reading stops there without --follow.
    let end_offsets = offsets(&admin, &topic, &partitions, OffsetSpec::Latest).await?;
    match &args.group {
        Some(_) => consumer
            .subscribe(&[topic.as_str()])
            .context(|| format!("cannot subscribe to {topic}"))?,
        None => {
            let assigned: Vec<TopicPartition> = partitions
                .iter()
                .map(|p| TopicPartition::new(topic.clone(), *p))
                .collect();
            consumer
                .assign(&assigned)
                .context(|| format!("cannot read {topic}"))?;
            let starts = match args.from {
                Start::Beginning => {
                    offsets(&admin, &topic, &partitions, OffsetSpec::Earliest).await?
                }
                Start::End => end_offsets.clone(),
                Start::Offset(n) => partitions.iter().map(|p| (*p, n)).collect(),
                Start::Timestamp(ms) => {
                    let found =
                        offsets(&admin, &topic, &partitions, OffsetSpec::Timestamp(ms)).await?;
                    // No record at or after the time: start at the end.
                    found
                        .into_iter()
                        .map(|(p, o)| {
                            let end = end_offsets.get(&p).copied().unwrap_or(0);
                            (p, if o < 0 { end } else { o })
                        })
                        .collect()
                }
            };
            for (partition, offset) in starts {
                consumer
                    .seek(&TopicPartition::new(topic.clone(), partition), offset)
                    .context(|| format!("cannot seek {topic}-{partition} to {offset}"))?;
            }
        }
    }

    let result = read(&mut consumer, &args, &format, &end_offsets).await;
    // A group member commits what it printed and leaves the group.
    let closed = consumer.close().await.context(|| {
        format!(
            "cannot commit the offsets of group {}",
            args.group.as_deref().unwrap_or("")
        )
    });
    result?;
    if args.group.is_some() {
        closed?;
    }
    Ok(())
}

/// Prints records until `-n`, until caught up (without `--follow`) or until Ctrl-C.
async fn read(
    consumer: &mut Consumer,
    args: &ConsumeArgs,
    format: &RecordFormat,
    end_offsets: &BTreeMap<i32, i64>,
) -> Result<(), Error> {
    let mut printed: u64 = 0;
    if args.count == Some(0) {
        return Ok(());
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let received = tokio::select! {
            received = tokio::time::timeout(IDLE_CHECK, consumer.recv()) => received,
            _ = &mut ctrl_c => return Ok(()),
        };
        match received {
            Ok(record) => {
                let record = record.context(|| format!("cannot read {}", args.topic))?;
                if try_print(&format.render(&record)).is_err() {
                    // Nobody reads any more (`| head -1`): stop as if -n were reached.
                    return Ok(());
                }
                printed += 1;
                if args.count.is_some_and(|n| printed >= n) {
                    return Ok(());
                }
            }
            Err(_idle) => {
                if !args.follow && caught_up(consumer, end_offsets).await? {
                    return Ok(());
                }
            }
        }
    }
}

/// Whether every partition the consumer reads has reached the end it had at the start. A
/// group member that has no partitions yet (joining) has not.
async fn caught_up(
    consumer: &mut Consumer,
    end_offsets: &BTreeMap<i32, i64>,
) -> Result<bool, Error> {
    let assigned = consumer.assignment();
    if assigned.is_empty() {
        return Ok(false);
    }
    for tp in assigned {
        let end = end_offsets.get(&tp.partition).copied().unwrap_or(0);
        let position = match consumer.position(&tp).await {
            Ok(position) => position,
            // A rebalance took the partition meanwhile: ask again on the next idle round.
            Err(_) => return Ok(false),
        };
        if position < end {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One offset per partition of `topic`.
async fn offsets(
    admin: &Admin,
    topic: &str,
    partitions: &[i32],
    spec: OffsetSpec,
) -> Result<BTreeMap<i32, i64>, Error> {
    let wanted: Vec<_> = partitions
        .iter()
        .map(|p| ((topic.to_string(), *p), spec))
        .collect();
    let mut out = BTreeMap::new();
    for ((_, partition), result) in admin
        .list_offsets(&wanted)
        .await
        .context(|| format!("cannot list the offsets of {topic}"))?
    {
        let listed =
            result.context(|| format!("cannot list the offsets of {topic}-{partition}"))?;
        out.insert(partition, listed.offset);
    }
    Ok(out)
}
