//! `weir group`: list, describe (members, committed offsets, lag), delete, seek.

use crate::args::{GroupArgs, GroupCommand, OutputFormat, Target};
use crate::error::{Context, Error};
use crate::output::{Table, print, print_json, report};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use weir_client::admin::{Admin, GroupDescription, OffsetSpec, TopicPartition};

pub(crate) async fn run(args: GroupArgs) -> Result<(), Error> {
    let admin = Admin::from_client(crate::connect(&args.connect, false).await?);
    let format = args.format;
    match args.command {
        GroupCommand::List => {
            let groups = admin
                .list_groups()
                .await
                .context(|| "cannot list groups".to_string())?;
            match format {
                OutputFormat::Json => print_json(&json!(
                    groups
                        .iter()
                        .map(|g| json!({
                            "group": g.group_id,
                            "state": g.state,
                            "protocol_type": g.protocol_type,
                            "coordinator": g.coordinator,
                        }))
                        .collect::<Vec<_>>()
                )),
                OutputFormat::Table => {
                    let mut table = Table::new(&["GROUP", "STATE", "TYPE", "COORDINATOR"]);
                    for g in &groups {
                        table.row(vec![
                            g.group_id.clone(),
                            g.state.clone(),
                            g.protocol_type.clone(),
                            g.coordinator.to_string(),
                        ]);
                    }
                    print(&table.render());
                }
            }
        }
        GroupCommand::Describe { groups } => {
            let mut described = Vec::new();
            for group in &groups {
                described.push(describe(&admin, group).await?);
            }
            match format {
                OutputFormat::Json => print_json(&json!(
                    described.iter().map(Described::json).collect::<Vec<_>>()
                )),
                OutputFormat::Table => {
                    let text: Vec<String> = described.iter().map(Described::table).collect();
                    print(&text.join("\n"));
                }
            }
        }
        GroupCommand::Delete { groups } => {
            let names: Vec<&str> = groups.iter().map(String::as_str).collect();
            let results = admin
                .delete_groups(&names)
                .await
                .context(|| format!("cannot delete {}", groups.join(", ")))?;
            let mut deleted = Vec::new();
            let mut failure = None;
            for (group, result) in results {
                match result {
                    Ok(()) => deleted.push(group),
                    Err(source) if failure.is_none() => {
                        failure = Some(Error::Client {
                            action: format!("cannot delete group {group}"),
                            source,
                        });
                    }
                    Err(_) => {}
                }
            }
            if !deleted.is_empty() {
                let lines: Vec<String> = deleted
                    .iter()
                    .map(|g| format!("deleted group {g}"))
                    .collect();
                report(format, lines.join("\n"), json!({ "deleted": deleted }));
            }
            if let Some(failure) = failure {
                return Err(failure);
            }
        }
        GroupCommand::Seek {
            group,
            topic,
            all_topics,
            to,
            dry_run: _,
            execute,
        } => seek(&admin, &group, &topic, all_topics, to, execute, format).await?,
    }
    Ok(())
}

/// One partition of a group: its committed offset, the log end and who reads it.
struct PartitionLag {
    partition: TopicPartition,
    committed: Option<i64>,
    end: Option<i64>,
    owner: Option<String>,
}

impl PartitionLag {
    fn lag(&self) -> Option<i64> {
        Some((self.end? - self.committed?).max(0))
    }
}

/// A group as `describe` shows it.
struct Described {
    group: GroupDescription,
    /// Each member's assigned partitions (empty when they do not decode).
    assignments: Vec<Vec<TopicPartition>>,
    partitions: Vec<PartitionLag>,
}

/// DescribeGroups for one group: its description, `None` when the answer lists none.
async fn describe_group(admin: &Admin, group: &str) -> Result<Option<GroupDescription>, Error> {
    admin
        .describe_groups(&[group])
        .await
        .context(|| format!("cannot describe group {group}"))?
        .into_iter()
        .next()
        .map(|(_, r)| r)
        .transpose()
        .context(|| format!("cannot describe group {group}"))
}

async fn describe(admin: &Admin, group: &str) -> Result<Described, Error> {
    let description = describe_group(admin, group)
        .await?
        .ok_or_else(|| Error::Failed(format!("no description of group {group}")))?;
    if description.state == "Dead" {
        return Err(Error::Failed(format!("group {group} does not exist")));
    }
    let committed: BTreeMap<TopicPartition, i64> = admin
        .list_group_offsets(group)
        .await
        .context(|| format!("cannot fetch the offsets of group {group}"))?
        .into_iter()
        .collect();
    let consumer_group =
        description.protocol_type == "consumer" || description.protocol_type.is_empty();
    let assignments: Vec<Vec<TopicPartition>> = description
        .members
        .iter()
        .map(|m| {
            if consumer_group {
                m.assigned_partitions().unwrap_or_default()
            } else {
                Vec::new()
            }
        })
        .collect();
    let mut owners: BTreeMap<TopicPartition, String> = BTreeMap::new();
    for (member, assigned) in description.members.iter().zip(&assignments) {
        for tp in assigned {
            owners.insert(tp.clone(), member.member_id.clone());
        }
    }
    let all: BTreeSet<TopicPartition> = committed.keys().chain(owners.keys()).cloned().collect();
    let ends = end_offsets(admin, all.iter().cloned().collect(), OffsetSpec::Latest).await?;
    let partitions = all
        .into_iter()
        .map(|tp| PartitionLag {
            committed: committed.get(&tp).copied(),
            end: ends.get(&tp).copied(),
            owner: owners.get(&tp).cloned(),
            partition: tp,
        })
        .collect();
    Ok(Described {
        group: description,
        assignments,
        partitions,
    })
}

impl Described {
    fn json(&self) -> serde_json::Value {
        let g = &self.group;
        json!({
            "group": g.group_id,
            "state": g.state,
            "protocol_type": g.protocol_type,
            "assignor": g.protocol,
            "members": g.members.iter().zip(&self.assignments).map(|(m, a)| json!({
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "host": m.client_host,
                "assignment": a.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "offsets": self.partitions.iter().map(|p| json!({
                "topic": p.partition.0,
                "partition": p.partition.1,
                "committed": p.committed,
                "end": p.end,
                "lag": p.lag(),
                "member_id": p.owner,
            })).collect::<Vec<_>>(),
        })
    }

    fn table(&self) -> String {
        let g = &self.group;
        let total_lag: i64 = self.partitions.iter().filter_map(PartitionLag::lag).sum();
        let mut text = format!(
            "Group: {}  State: {}  Assignor: {}  Members: {}  Lag: {}\n",
            g.group_id,
            g.state,
            if g.protocol.is_empty() {
                "-"
            } else {
                &g.protocol
            },
            g.members.len(),
            total_lag
        );
        if !g.members.is_empty() {
            let mut members = Table::new(&["MEMBER", "CLIENT-ID", "HOST", "ASSIGNMENT"]);
            for (m, assigned) in g.members.iter().zip(&self.assignments) {
                let assignment: Vec<String> =
                    assigned.iter().map(|(t, p)| format!("{t}-{p}")).collect();
                members.row(vec![
                    m.member_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    if assignment.is_empty() {
                        "-".to_string()
                    } else {
                        assignment.join(",")
                    },
                ]);
            }
            text.push('\n');
            text.push_str(&members.render());
        }
        let mut offsets = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"]);
        for p in &self.partitions {
            offsets.row(vec![
                p.partition.0.clone(),
                p.partition.1.to_string(),
                dash(p.committed),
                dash(p.end),
                dash(p.lag()),
                p.owner.clone().unwrap_or_else(|| "-".to_string()),
            ]);
        }
        text.push('\n');
        text.push_str(&offsets.render());
        text
    }
}

fn dash(n: Option<i64>) -> String {
    n.map_or_else(|| "-".to_string(), |n| n.to_string())
}

/// The offsets `spec` finds, for the partitions that have one.
async fn end_offsets(
    admin: &Admin,
    partitions: Vec<TopicPartition>,
    spec: OffsetSpec,
) -> Result<BTreeMap<TopicPartition, i64>, Error> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let wanted: Vec<_> = partitions.into_iter().map(|tp| (tp, spec)).collect();
    Ok(admin
        .list_offsets(&wanted)
        .await
        .context(|| "cannot list offsets".to_string())?
        .into_iter()
        .filter_map(|(tp, r)| r.ok().map(|o| (tp, o.offset)))
        .collect())
}

/// `group seek`: the plan (current and new offset per partition), committed with `execute`.
async fn seek(
    admin: &Admin,
    group: &str,
    topics: &[String],
    all_topics: bool,
    to: Target,
    execute: bool,
    format: OutputFormat,
) -> Result<(), Error> {
    let committed: BTreeMap<TopicPartition, i64> = admin
        .list_group_offsets(group)
        .await
        .context(|| format!("cannot fetch the offsets of group {group}"))?
        .into_iter()
        .collect();
    let partitions: Vec<TopicPartition> = if all_topics {
        committed.keys().cloned().collect()
    } else {
        let mut out = Vec::new();
        for topic in crate::topic::describe_topics(admin, topics).await? {
            out.extend(
                topic
                    .partitions
                    .iter()
                    .map(|p| (topic.name.clone(), p.partition)),
            );
        }
        out
    };
    if partitions.is_empty() {
        return Err(Error::Failed(format!(
            "group {group} has no committed offsets to move"
        )));
    }
    let earliest = end_offsets(admin, partitions.clone(), OffsetSpec::Earliest).await?;
    let latest = end_offsets(admin, partitions.clone(), OffsetSpec::Latest).await?;
    let by_time = match to {
        Target::Timestamp(ms) => {
            end_offsets(admin, partitions.clone(), OffsetSpec::Timestamp(ms)).await?
        }
        _ => BTreeMap::new(),
    };
    let mut plan: Vec<(TopicPartition, Option<i64>, i64)> = Vec::new();
    for tp in partitions {
        let low = earliest.get(&tp).copied().unwrap_or(0);
        let high = latest.get(&tp).copied().unwrap_or(low);
        let new = match to {
            Target::Earliest => low,
            Target::Latest => high,
            // Like kafka-consumer-groups.sh: an offset outside the log moves to its nearer end.
            Target::Offset(n) => n.clamp(low, high.max(low)),
            // No record at or after the time: the end.
            Target::Timestamp(_) => match by_time.get(&tp) {
                Some(offset) if *offset >= 0 => *offset,
                _ => high,
            },
        };
        plan.push((tp.clone(), committed.get(&tp).copied(), new));
    }

    if execute {
        if let Some(d) = describe_group(admin, group).await?
            && !d.members.is_empty()
        {
            return Err(Error::Failed(format!(
                "group {group} has {} active member(s) (state {}); stop its consumers before \
                 moving its offsets",
                d.members.len(),
                d.state
            )));
        }
        let offsets: Vec<(TopicPartition, i64)> =
            plan.iter().map(|(tp, _, new)| (tp.clone(), *new)).collect();
        for ((topic, partition), result) in admin
            .alter_group_offsets(group, &offsets)
            .await
            .context(|| format!("cannot commit offsets for group {group}"))?
        {
            result.context(|| format!("cannot commit {topic}-{partition} for group {group}"))?;
        }
    }

    match format {
        OutputFormat::Json => print_json(&json!({
            "group": group,
            "executed": execute,
            "partitions": plan.iter().map(|((t, p), current, new)| json!({
                "topic": t, "partition": p, "current": current, "new": new,
            })).collect::<Vec<_>>(),
        })),
        OutputFormat::Table => {
            let mut table = Table::new(&["TOPIC", "PARTITION", "CURRENT", "NEW"]);
            for ((t, p), current, new) in &plan {
                table.row(vec![
                    t.clone(),
                    p.to_string(),
                    dash(*current),
                    new.to_string(),
                ]);
            }
            print(&table.render());
            if execute {
                eprintln!("committed {} offsets for group {group}", plan.len());
            } else {
                eprintln!("dry run: nothing changed; add --execute to commit these offsets");
            }
        }
    }
    Ok(())
}
