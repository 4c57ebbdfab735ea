//! WriteTxnMarkers: a transaction coordinator ends a producer's transaction on partitions this
//! broker leads, with a COMMIT or ABORT marker (a control batch) in each.
//!
//! - An inter-broker API (Kafka lists it for the `broker` listener); advertised in
//!   ApiVersions like every other API served. Versions 1-2 (version 0 is gone since Kafka 4.0;
//!   version 2's `TransactionVersion`, KIP-1228, is accepted and not needed here: the marker's
//!   producer epoch is taken as given).
//! - Per partition: UNKNOWN_TOPIC_OR_PARTITION for a topic or partition that does not exist,
//!   NOT_LEADER_OR_FOLLOWER where this broker does not lead; then, under the partition's role
//!   and producer-state locks, the marker is checked against the producer state (an older
//!   producer epoch: INVALID_PRODUCER_EPOCH; an older coordinator epoch than the producer's
//!   last marker: TRANSACTION_COORDINATOR_FENCED) and `min.insync.replicas` against the ISR
//!   (NOT_ENOUGH_REPLICAS), as an acks=all produce; the control batch is appended with the
//!   producer id and epoch and the coordinator epoch in its record; the producer's ongoing
//!   transaction ends, and an ABORT records it in the transaction index (see
//!   `producer_state`).
//! - The answer waits, as acks=all would, until the high watermark passes each marker:
//!   REQUEST_TIMED_OUT after Kafka's default `request.timeout.ms` (30 s), NOT_LEADER_OR_FOLLOWER
//!   if leadership moves meanwhile, NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrinks below
//!   the minimum. The coordinator retries failed partitions; a marker written twice ends
//!   nothing the second time.
//!
//! The transaction coordinator (`transactions`) calls [`write`] directly for partitions this
//! broker leads, and sends this request to the other leaders.

use crate::connection::RequestContext;
use crate::error::{log_error_code, producer_error_code};
use crate::partitions::Partitions;
use crate::producers::{ProducerError, TxnMarker, wall_clock_ms};
use crate::replication::{PendingAck, Role};
use crate::state::Broker;
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;
use weir_protocol::ErrorCode;
use weir_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use weir_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use weir_records::EndTransactionMarker;

super::always_responds!(WriteTxnMarkersRequest);

/// Kafka's default `request.timeout.ms`, which bounds its wait for a marker's replication.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a marker was not written.
enum Refused {
    Code(ErrorCode),
    Producer(ProducerError),
    Log(weir_log::Error),
}

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    write(broker, request).await
}

/// Writes the markers of `request` on the partitions this broker leads and waits for them to
/// be committed: the request's whole work, without a connection.
pub(crate) async fn write(
    broker: &Arc<Broker>,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let fallback = results(&request, |_, _| ErrorCode::KAFKA_STORAGE_ERROR);
    // Per marker: its producer id and result, for the transactional offsets of
    // `__consumer_offsets` partitions below.
    let outcomes: Vec<(i64, bool)> = request
        .markers
        .iter()
        .map(|m| (m.producer_id, m.transaction_result))
        .collect();
    let task_broker = broker.clone();
    let written = crate::blocking::spawn(move || write_all(&task_broker, &request)).await;
    let (mut markers, commits) = written.unwrap_or((fallback, Vec::new()));
    let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
    for ((m, t, p), e) in broker.replicas.wait_for_acks(commits, deadline).await {
        if let Some(partition) = markers
            .get_mut(m)
            .and_then(|marker| marker.topics.get_mut(t))
            .and_then(|topic| topic.partitions.get_mut(p))
        {
            debug!(partition = partition.partition_index, error = ?e, "transaction marker not acknowledged");
            partition.error_code = e.code().code();
        }
    }
    // A marker on a `__consumer_offsets` partition decides the offsets the transaction
    // committed for that partition's groups (TxnOffsetCommit): visible on COMMIT, dropped on
    // ABORT. A failure leaves them pending and fails the partition, so the coordinator sends
    // the marker again.
    for (marker, &(producer_id, commit)) in markers.iter_mut().zip(&outcomes) {
        for topic in &mut marker.topics {
            if topic.name != crate::groups::OFFSETS_TOPIC {
                continue;
            }
            for partition in &mut topic.partitions {
                if partition.error_code != 0 {
                    continue;
                }
                let completed = broker
                    .groups
                    .complete_txn(broker, producer_id, partition.partition_index, commit)
                    .await;
                if let Err(failure) = completed {
                    partition.error_code = failure.code(false).code();
                }
            }
        }
    }
    WriteTxnMarkersResponse {
        markers,
        ..WriteTxnMarkersResponse::default()
    }
}

/// The response shape of `request` with each partition's code from `code(topic, partition)`.
fn results(
    request: &WriteTxnMarkersRequest,
    mut code: impl FnMut(&str, i32) -> ErrorCode,
) -> Vec<WritableTxnMarkerResult> {
    request
        .markers
        .iter()
        .map(|marker| WritableTxnMarkerResult {
            producer_id: marker.producer_id,
            topics: marker
                .topics
                .iter()
                .map(|topic| WritableTxnMarkerTopicResult {
                    name: topic.name.clone(),
                    partitions: topic
                        .partition_indexes
                        .iter()
                        .map(|&index| WritableTxnMarkerPartitionResult {
                            partition_index: index,
                            error_code: code(&topic.name, index).code(),
                            ..WritableTxnMarkerPartitionResult::default()
                        })
                        .collect(),
                    ..WritableTxnMarkerTopicResult::default()
                })
                .collect(),
            ..WritableTxnMarkerResult::default()
        })
        .collect()
}

/// The results of a request, and what each written marker waits for by (marker, topic,
/// partition) index.
type Written = (
    Vec<WritableTxnMarkerResult>,
    Vec<((usize, usize, usize), PendingAck)>,
);

/// Writes every marker of the request, in order, on the blocking pool.
fn write_all(broker: &Arc<Broker>, request: &WriteTxnMarkersRequest) -> Written {
    let mut commits = Vec::new();
    let mut markers = Vec::with_capacity(request.markers.len());
    for (m, marker) in request.markers.iter().enumerate() {
        let txn = TxnMarker {
            producer_id: marker.producer_id,
            producer_epoch: marker.producer_epoch,
            coordinator_epoch: marker.coordinator_epoch,
            commit: marker.transaction_result,
        };
        let mut topics = Vec::with_capacity(marker.topics.len());
        for (t, topic) in marker.topics.iter().enumerate() {
            let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
            for (p, &index) in topic.partition_indexes.iter().enumerate() {
                let code = match write_marker(broker, &topic.name, index, &txn) {
                    Ok(commit) => {
                        broker.replicas.local_log_end_offset_moved(&commit.replica);
                        commits.push(((m, t, p), commit));
                        ErrorCode::NONE
                    }
                    Err(refused) => {
                        let code = match &refused {
                            Refused::Code(code) => *code,
                            Refused::Producer(e) => producer_error_code(e),
                            Refused::Log(e) => log_error_code(e),
                        };
                        debug!(topic = %topic.name, partition = index, producer_id = txn.producer_id, error = code.name(), "transaction marker refused");
                        code
                    }
                };
                partitions.push(WritableTxnMarkerPartitionResult {
                    partition_index: index,
                    error_code: code.code(),
                    ..WritableTxnMarkerPartitionResult::default()
                });
            }
            topics.push(WritableTxnMarkerTopicResult {
                name: topic.name.clone(),
                partitions,
                ..WritableTxnMarkerTopicResult::default()
            });
        }
        markers.push(WritableTxnMarkerResult {
            producer_id: marker.producer_id,
            topics,
            ..WritableTxnMarkerResult::default()
        });
    }
    if !commits.is_empty() {
        broker.partitions.notify_appended();
    }
    (markers, commits)
}

/// Writes one partition's marker as its leader.
fn write_marker(
    broker: &Broker,
    topic: &str,
    index: i32,
    txn: &TxnMarker,
) -> Result<PendingAck, Refused> {
    let topic_id = broker
        .topics
        .get(topic)
        .ok_or(Refused::Code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION))?
        .id;
    let (replica, leader_epoch) = broker
        .leader_replica(topic, index, -1)
        .map_err(Refused::Code)?;
    // Held across the append, as for Produce: the replica cannot turn follower meanwhile.
    let role = replica.role.lock();
    match &*role {
        Role::Leader(leader) if leader.leader_epoch() == leader_epoch => {
            if leader.check_min_isr().is_err() {
                return Err(Refused::Code(ErrorCode::NOT_ENOUGH_REPLICAS));
            }
        }
        _ => return Err(Refused::Code(ErrorCode::NOT_LEADER_OR_FOLLOWER)),
    }
    let log = &replica.log;
    let end_offset = broker
        .producer_states
        .with_table(topic, topic_id, index, log, |table| {
            table.check_marker(txn).map_err(Refused::Producer)?;
            let now = wall_clock_ms();
            let marker = EndTransactionMarker {
                commit: txn.commit,
                coordinator_epoch: txn.coordinator_epoch,
            };
            let batch = marker
                .batch_builder(txn.producer_id, txn.producer_epoch, now)
                .build()
                .map_err(|_| Refused::Code(ErrorCode::UNKNOWN_SERVER_ERROR))?;
            let info =
                Partitions::append_blocking(log, &batch, leader_epoch).map_err(Refused::Log)?;
            if let Some(done) = table.complete_txn(txn, info.first_offset, now) {
                if done.aborted {
                    log.add_aborted_txn(table.aborted_entry(&done))
                        .map_err(Refused::Log)?;
                }
            }
            Ok(info.last_offset + 1)
        })
        .map_err(Refused::Log)??;
    drop(role);
    Ok(PendingAck {
        replica,
        leader_epoch,
        end_offset,
    })
}
