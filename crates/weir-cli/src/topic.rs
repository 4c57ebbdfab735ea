//! `weir topic`: create, list, describe, delete, alter-config, add-partitions.

use crate::args::{OutputFormat, TopicArgs, TopicCommand};
use crate::error::{Context, Error};
use crate::output::{Table, ids, print, print_json, report, topic_id};
use serde_json::json;
use weir_client::TopicMetadata;
use weir_client::admin::{
    Admin, AlterConfigOp, ConfigEntry, ConfigResource, ListedOffset, NewTopic, OffsetSpec,
};
use weir_protocol::ErrorCode;

pub(crate) async fn run(args: TopicArgs) -> Result<(), Error> {
    let admin = Admin::from_client(crate::connect(&args.connect, false).await?);
    let format = args.format;
    match args.command {
        TopicCommand::Create {
            topic,
            partitions,
            replication_factor,
            config,
        } => {
            let new = NewTopic {
                name: topic.clone(),
                num_partitions: partitions.unwrap_or(-1),
                replication_factor: replication_factor.unwrap_or(-1),
                configs: config,
            };
            let results = admin
                .create_topics(&[new])
                .await
                .context(|| format!("cannot create topic {topic}"))?;
            first_failure(results, "cannot create topic")?;
            report(
                format,
                format!("created topic {topic}"),
                json!({ "created": topic }),
            );
        }
        TopicCommand::List { internal } => {
            let topics: Vec<TopicMetadata> = admin
                .list_topics()
                .await
                .context(|| "cannot list topics".to_string())?
                .into_iter()
                .filter(|t| internal || !t.is_internal)
                .collect();
            match format {
                OutputFormat::Json => print_json(&json!(
                    topics
                        .iter()
                        .map(|t| json!({
                            "name": t.name,
                            "partitions": t.partitions.len(),
                            "replication_factor": replication_factor(t),
                            "internal": t.is_internal,
                        }))
                        .collect::<Vec<_>>()
                )),
                OutputFormat::Table => {
                    let mut table = Table::new(&["TOPIC", "PARTITIONS", "REPLICAS"]);
                    for t in &topics {
                        table.row(vec![
                            t.name.clone(),
                            t.partitions.len().to_string(),
                            replication_factor(t).to_string(),
                        ]);
                    }
                    print(&table.render());
                }
            }
        }
        TopicCommand::Describe { topics } => describe(&admin, &topics, format).await?,
        TopicCommand::Delete { topics } => {
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            let results = admin
                .delete_topics(&names)
                .await
                .context(|| format!("cannot delete {}", topics.join(", ")))?;
            let deleted: Vec<String> = results
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(name, _)| name.clone())
                .collect();
            if !deleted.is_empty() {
                let lines: Vec<String> = deleted
                    .iter()
                    .map(|t| format!("deleted topic {t}"))
                    .collect();
                report(format, lines.join("\n"), json!({ "deleted": deleted }));
            }
            first_failure(results, "cannot delete topic")?;
        }
        TopicCommand::AlterConfig { topic, set, delete } => {
            if set.is_empty() && delete.is_empty() {
                return Err(Error::Usage(
                    "alter-config needs --set KEY=VALUE or --delete KEY".to_string(),
                ));
            }
            let ops: Vec<AlterConfigOp> = set
                .into_iter()
                .map(|(k, v)| AlterConfigOp::Set(k, v))
                .chain(delete.into_iter().map(AlterConfigOp::Delete))
                .collect();
            let results = admin
                .alter_configs(&[(ConfigResource::Topic(topic.clone()), ops)])
                .await
                .context(|| format!("cannot alter the configs of {topic}"))?;
            for (_, result) in results {
                result.context(|| format!("cannot alter the configs of {topic}"))?;
            }
            report(
                format,
                format!("altered the configs of {topic}"),
                json!({ "altered": topic }),
            );
        }
        TopicCommand::AddPartitions { topic, partitions } => {
            let results = admin
                .create_partitions(&[(topic.as_str(), partitions)])
                .await
                .context(|| format!("cannot add partitions to {topic}"))?;
            first_failure(results, "cannot add partitions to")?;
            report(
                format,
                format!("{topic} now has {partitions} partitions"),
                json!({ "topic": topic, "partitions": partitions }),
            );
        }
    }
    Ok(())
}

/// The first per-topic failure, as the command's error.
fn first_failure(
    results: Vec<(String, weir_client::Result<()>)>,
    action: &str,
) -> Result<(), Error> {
    let failures = results.iter().filter(|(_, r)| r.is_err()).count();
    for (name, result) in results {
        if let Err(source) = result {
            let more = if failures > 1 {
                format!(" (and {} more)", failures - 1)
            } else {
                String::new()
            };
            return Err(Error::Client {
                action: format!("{action} {name}{more}"),
                source,
            });
        }
    }
    Ok(())
}

/// Topics' metadata, never creating one, without retrying (a client's topic lookup waits for
/// a missing topic to appear); a missing topic is named as such.
pub(crate) async fn describe_topics(
    admin: &Admin,
    topics: &[String],
) -> Result<Vec<TopicMetadata>, Error> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for (name, result) in admin
        .describe_topics(&names)
        .await
        .context(|| format!("cannot describe {}", topics.join(", ")))?
    {
        match result {
            Ok(topic) => out.push(topic),
            Err(weir_client::Error::Kafka { code, .. })
                if code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION =>
            {
                return Err(Error::Failed(format!("topic {name} does not exist")));
            }
            Err(source) => {
                return Err(Error::Client {
                    action: format!("cannot describe topic {name}"),
                    source,
                });
            }
        }
    }
    Ok(out)
}

fn replication_factor(topic: &TopicMetadata) -> usize {
    topic.partitions.first().map_or(0, |p| p.replicas.len())
}

/// One topic's partitions with their offsets, and its configs.
struct Described {
    topic: TopicMetadata,
    offsets: Vec<(Option<ListedOffset>, Option<ListedOffset>)>,
    configs: Vec<ConfigEntry>,
}

async fn describe(admin: &Admin, topics: &[String], format: OutputFormat) -> Result<(), Error> {
    let mut described = Vec::new();
    for topic in describe_topics(admin, topics).await? {
        let name = topic.name.clone();
        let mut offsets = Vec::new();
        for spec in [OffsetSpec::Earliest, OffsetSpec::Latest] {
            let wanted: Vec<_> = topic
                .partitions
                .iter()
                .map(|p| ((name.clone(), p.partition), spec))
                .collect();
            // An offline partition has no offsets to show; the rest still do.
            let found = admin
                .list_offsets(&wanted)
                .await
                .context(|| format!("cannot list the offsets of {name}"))?;
            offsets.push(found.into_iter().map(|(_, r)| r.ok()).collect::<Vec<_>>());
        }
        let latest = offsets.pop().unwrap_or_default();
        let earliest = offsets.pop().unwrap_or_default();
        let configs = admin
            .describe_configs(&[ConfigResource::Topic(name.clone())])
            .await
            .context(|| format!("cannot describe the configs of {name}"))?
            .into_iter()
            .next()
            .map(|(_, r)| r)
            .transpose()
            .context(|| format!("cannot describe the configs of {name}"))?
            .unwrap_or_default();
        described.push(Described {
            offsets: earliest.into_iter().zip(latest).collect(),
            topic,
            configs,
        });
    }
    match format {
        OutputFormat::Json => {
            let out: Vec<serde_json::Value> = described
                .iter()
                .map(|d| {
                    json!({
                        "name": d.topic.name,
                        "id": topic_id(&d.topic.topic_id),
                        "internal": d.topic.is_internal,
                        "partitions": d.topic.partitions.iter().zip(&d.offsets).map(|(p, (earliest, latest))| json!({
                            "partition": p.partition,
                            "leader": p.leader_id,
                            "leader_epoch": p.leader_epoch,
                            "replicas": p.replicas,
                            "isr": p.isr,
                            "earliest_offset": earliest.map(|o| o.offset),
                            "latest_offset": latest.map(|o| o.offset),
                        })).collect::<Vec<_>>(),
                        "configs": d.configs.iter().map(|c| json!({
                            "name": c.name,
                            "value": c.value,
                            "source": c.source.name(),
                            "read_only": c.read_only,
                            "sensitive": c.is_sensitive,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            print_json(&json!(out));
        }
        OutputFormat::Table => {
            let mut text = String::new();
            for (i, d) in described.iter().enumerate() {
                if i > 0 {
                    text.push('\n');
                }
                text.push_str(&format!(
                    "Topic: {}  Id: {}  Partitions: {}  Replication factor: {}{}\n\n",
                    d.topic.name,
                    topic_id(&d.topic.topic_id),
                    d.topic.partitions.len(),
                    replication_factor(&d.topic),
                    if d.topic.is_internal {
                        "  (internal)"
                    } else {
                        ""
                    },
                ));
                let mut partitions = Table::new(&[
                    "PARTITION",
                    "LEADER",
                    "REPLICAS",
                    "ISR",
                    "EARLIEST",
                    "LATEST",
                ]);
                for (p, (earliest, latest)) in d.topic.partitions.iter().zip(&d.offsets) {
                    partitions.row(vec![
                        p.partition.to_string(),
                        if p.leader_id < 0 {
                            "none".to_string()
                        } else {
                            p.leader_id.to_string()
                        },
                        ids(&p.replicas),
                        ids(&p.isr),
                        offset(earliest),
                        offset(latest),
                    ]);
                }
                text.push_str(&partitions.render());
                let mut configs = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
                for c in &d.configs {
                    configs.row(vec![
                        c.name.clone(),
                        if c.is_sensitive {
                            "(sensitive)".to_string()
                        } else {
                            c.value.clone().unwrap_or_else(|| "-".to_string())
                        },
                        c.source.name().to_string(),
                    ]);
                }
                if !configs.is_empty() {
                    text.push('\n');
                    text.push_str(&configs.render());
                }
            }
            print(&text);
        }
    }
    Ok(())
}

fn offset(listed: &Option<ListedOffset>) -> String {
    listed.map_or_else(|| "-".to_string(), |o| o.offset.to_string())
}
