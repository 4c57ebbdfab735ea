//! AlterReplicaLogDirs: moves replicas of this broker to another of its data directories
//! (`log.dirs`).
//!
//! Per partition: a path that is not one of the data directories (as configured or made
//! absolute, as DescribeLogDirs reports them) is LOG_DIR_NOT_FOUND, an offline one
//! KAFKA_STORAGE_ERROR; a partition without a log here REPLICA_NOT_AVAILABLE; one already in
//! the directory NONE. Otherwise the log is moved before the response (Kafka answers at once
//! and copies in the background): its inactive segments are copied while it takes appends,
//! then, holding the replica's role lock so nothing is appended, the rest is copied and the
//! copy swapped in (`weir_log::LogMove`, `Replicas::swap_log`). Appends pause for that last
//! part, about one segment's worth of copying. Moves run one partition after another on the
//! blocking pool.

use crate::connection::RequestContext;
use crate::error::log_error_code;
use crate::state::Broker;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weir_log::TopicPartition;
use weir_protocol::ErrorCode;
use weir_protocol::messages::alter_replica_log_dirs_request::AlterReplicaLogDir;
use weir_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use weir_protocol::messages::{AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse};

super::always_responds!(AlterReplicaLogDirsRequest);

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: AlterReplicaLogDirsRequest,
) -> AlterReplicaLogDirsResponse {
    let b = broker.clone();
    let dirs = request.dirs.clone();
    let results = match crate::blocking::spawn(move || alter(&b, dirs)).await {
        Ok(results) => results,
        // The task did not finish: whether a move completed is unknown.
        Err(_) => answer(request.dirs.iter().flat_map(|dir| {
            dir.topics.iter().flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|&p| (t.name.clone(), p, ErrorCode::KAFKA_STORAGE_ERROR))
            })
        })),
    };
    AlterReplicaLogDirsResponse {
        results,
        ..AlterReplicaLogDirsResponse::default()
    }
}

/// Moves every named partition, then re-applies the metadata image so moved followers fetch
/// again (see `Replicas::swap_log`).
fn alter(
    broker: &Arc<Broker>,
    dirs: Vec<AlterReplicaLogDir>,
) -> Vec<AlterReplicaLogDirTopicResult> {
    let mut outcomes = Vec::new();
    let mut moved = false;
    for dir in dirs {
        let target = data_dir(broker, &dir.path);
        for topic in dir.topics {
            for partition in topic.partitions {
                let tp = TopicPartition::new(&topic.name, partition);
                let code = match &target {
                    None => ErrorCode::LOG_DIR_NOT_FOUND,
                    Some(target) => match move_replica(broker, &tp, target) {
                        Ok(did_move) => {
                            moved |= did_move;
                            ErrorCode::NONE
                        }
                        Err(code) => code,
                    },
                };
                outcomes.push((topic.name.clone(), partition, code));
            }
        }
    }
    if moved {
        broker.replicas.apply(broker, &broker.topics.image());
    }
    answer(outcomes)
}

/// The data directory `path` names, as configured.
fn data_dir(broker: &Broker, path: &str) -> Option<PathBuf> {
    let asked = Path::new(path);
    broker
        .config()
        .log_dirs
        .iter()
        .find(|dir| {
            dir.as_path() == asked || std::path::absolute(dir).is_ok_and(|a| a.as_path() == asked)
        })
        .cloned()
}

/// Moves one partition's log to `target`; whether it moved (false: it was there).
fn move_replica(broker: &Broker, tp: &TopicPartition, target: &Path) -> Result<bool, ErrorCode> {
    let mv = match broker.partitions.prepare_move(tp, target) {
        Ok(Some(mv)) => mv,
        Ok(None) => return Ok(false),
        Err(e) => {
            tracing::warn!(partition = %tp, dir = %target.display(), error = %e, "cannot move the replica");
            return Err(log_error_code(&e));
        }
    };
    broker
        .replicas
        .swap_log(tp, || broker.partitions.finish_move(mv))
        .map(|()| true)
        .map_err(|e| {
            tracing::warn!(partition = %tp, dir = %target.display(), error = %e, "cannot move the replica");
            log_error_code(&e)
        })
}

/// The results grouped by topic, in the order topics first appear.
fn answer(
    outcomes: impl IntoIterator<Item = (String, i32, ErrorCode)>,
) -> Vec<AlterReplicaLogDirTopicResult> {
    let mut order = Vec::new();
    let mut by_topic: BTreeMap<String, Vec<AlterReplicaLogDirPartitionResult>> = BTreeMap::new();
    for (topic, partition, code) in outcomes {
        if !by_topic.contains_key(&topic) {
            order.push(topic.clone());
        }
        by_topic
            .entry(topic)
            .or_default()
            .push(AlterReplicaLogDirPartitionResult {
                partition_index: partition,
                error_code: code.code(),
                ..AlterReplicaLogDirPartitionResult::default()
            });
    }
    order
        .into_iter()
        .filter_map(|topic| {
            let partitions = by_topic.remove(&topic)?;
            Some(AlterReplicaLogDirTopicResult {
                topic_name: topic,
                partitions,
                ..AlterReplicaLogDirTopicResult::default()
            })
        })
        .collect()
}
