//! DescribeLogDirs: each data directory (`log.dirs`) of this broker with the partition logs it
//! holds, their sizes and lag, and (v4+) the size and free space of its file system.
//!
//! The offset lag is Kafka's for a current (not future) log: `max(0, high watermark - log end
//! offset)` with the high watermark this broker knows. A leader's high watermark never passes
//! its log end offset, and a follower's is the leader's capped by its own log end offset, so
//! the lag is 0 here as it is in Kafka; a log without a replica state yet also reports 0.

use crate::connection::RequestContext;
use crate::state::Broker;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use weir_log::{Log, TopicPartition};
use weir_protocol::ErrorCode;
use weir_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use weir_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use weir_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

super::always_responds!(DescribeLogDirsRequest);

/// Kafka's `UNKNOWN_VOLUME_BYTES`: the file system's sizes could not be read.
const UNKNOWN_VOLUME_BYTES: i64 = -1;

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    // File system calls (statvfs) go to the blocking pool, like every other disk access.
    let b = broker.clone();
    match crate::blocking::spawn(move || describe(&b, request.topics)).await {
        Ok(results) => DescribeLogDirsResponse {
            results,
            ..DescribeLogDirsResponse::default()
        },
        Err(_) => DescribeLogDirsResponse {
            error_code: ErrorCode::KAFKA_STORAGE_ERROR.code(),
            ..DescribeLogDirsResponse::default()
        },
    }
}

/// Every data directory of this broker, with the logs in it among `topics` (null: every log).
fn describe(
    broker: &Broker,
    topics: Option<Vec<DescribableLogDirTopic>>,
) -> Vec<DescribeLogDirsResult> {
    let wanted: Option<BTreeSet<(String, i32)>> = topics.map(|topics| {
        topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.topic;
                t.partitions.into_iter().map(move |p| (topic.clone(), p))
            })
            .collect()
    });
    let logs = broker.partitions.all();
    let offline = broker.partitions.offline_dirs();
    broker
        .config()
        .log_dirs
        .iter()
        .map(|dir| {
            let log_dir = std::path::absolute(dir)
                .unwrap_or_else(|_| dir.clone())
                .display()
                .to_string();
            if offline.iter().any(|o| o.path == *dir) {
                return DescribeLogDirsResult {
                    error_code: ErrorCode::KAFKA_STORAGE_ERROR.code(),
                    log_dir,
                    ..DescribeLogDirsResult::default()
                };
            }
            let in_dir = logs.iter().filter(|(tp, log)| {
                log.dir().parent() == Some(dir.as_path())
                    && wanted
                        .as_ref()
                        .is_none_or(|w| w.contains(&(tp.topic.clone(), tp.partition)))
            });
            let (total_bytes, usable_bytes) = volume_bytes(dir);
            DescribeLogDirsResult {
                error_code: 0,
                log_dir,
                topics: by_topic(broker, in_dir),
                total_bytes,
                usable_bytes,
                ..DescribeLogDirsResult::default()
            }
        })
        .collect()
}

/// The logs grouped by topic, in name and partition order.
fn by_topic<'a>(
    broker: &Broker,
    logs: impl Iterator<Item = &'a (TopicPartition, Arc<Log>)>,
) -> Vec<DescribeLogDirsTopic> {
    let mut topics: BTreeMap<&str, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for (tp, log) in logs {
        let high_watermark = broker
            .replicas
            .get(&tp.topic, tp.partition)
            .map(|r| r.high_watermark());
        topics
            .entry(&tp.topic)
            .or_default()
            .push(DescribeLogDirsPartition {
                partition_index: tp.partition,
                partition_size: i64::try_from(log.size_bytes()).unwrap_or(i64::MAX),
                offset_lag: high_watermark.map_or(0, |hw| (hw - log.log_end_offset()).max(0)),
                is_future_key: false,
                ..DescribeLogDirsPartition::default()
            });
    }
    topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic {
                name: name.to_string(),
                partitions,
                ..DescribeLogDirsTopic::default()
            }
        })
        .collect()
}

/// The total and usable (available to this user) bytes of the file system holding `dir`, as
/// Java's `FileStore.getTotalSpace` and `getUsableSpace` report them.
fn volume_bytes(dir: &Path) -> (i64, i64) {
    match rustix::fs::statvfs(dir) {
        Ok(stat) => {
            let bytes = |blocks: u64| {
                i64::try_from(blocks.saturating_mul(stat.f_frsize)).unwrap_or(i64::MAX)
            };
            (bytes(stat.f_blocks), bytes(stat.f_bavail))
        }
        Err(_) => (UNKNOWN_VOLUME_BYTES, UNKNOWN_VOLUME_BYTES),
    }
}
