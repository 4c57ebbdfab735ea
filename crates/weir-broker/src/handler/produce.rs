//! Produce: appends each partition's record batch to its log.
//!
//! - Topics are named (v3-12) or identified by id (v13); Produce never creates topics (only
//!   Metadata does, as in Kafka).
//! - acks 0 sends no response; 1 answers after the leader's append; -1 (all) first checks
//!   `min.insync.replicas` against the ISR (NOT_ENOUGH_REPLICAS, nothing appended), then
//!   answers once the high watermark passes the batch (see `replication`): with
//!   `durable.acks` that is once every ISR member has fsynced it. A wait longer than the
//!   request's `timeout_ms` answers REQUEST_TIMED_OUT, a leadership lost meanwhile
//!   NOT_LEADER_OR_FOLLOWER, and an ISR shrunk below the minimum meanwhile
//!   NOT_ENOUGH_REPLICAS_AFTER_APPEND (the batch stays in the log, as in Kafka).
//! - As in Kafka, each partition carries exactly one v2 record batch, and clients cannot
//!   write to internal topics.
//! - Batches with a producer id go through the partition's [`ProducerTable`] (see
//!   `producer_state`): retries get their original offsets, out-of-order sequences and fenced
//!   epochs are refused. A transactional batch goes through the same checks and starts (or
//!   continues) its producer's ongoing transaction on the partition, which holds back the last
//!   stable offset until WriteTxnMarkers ends it; a non-transactional batch from a producer
//!   with an ongoing transaction gets INVALID_TXN_STATE.
//! - KIP-890 part 1: when the request names a transactional id, a transactional batch that would
//!   start its producer's transaction on the partition is first verified with the transactional
//!   id's coordinator (`transactions::verify`): a partition not added to the ongoing
//!   transaction gets INVALID_TXN_STATE (a late write of a transaction already ended must not
//!   open a new one that nothing will close), a stale epoch INVALID_PRODUCER_EPOCH, a
//!   coordinator that cannot answer NOT_ENOUGH_REPLICAS (retriable), as Kafka answers.
//! - A request's appends run in one task on the blocking pool; waiting fetches are woken
//!   once afterwards.
//!
//! [`ProducerTable`]: crate::producers::ProducerTable

use crate::connection::RequestContext;
use crate::error::{log_error_code, producer_error_code};
use crate::partitions::Partitions;
use crate::producers::{BatchMetadata, ProducerBatch, ProducerError, Verdict, wall_clock_ms};
use crate::replication::{PendingAck, Role};
use crate::state::Broker;
use crate::topics::Topic;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;
use weir_log::{AppendInfo, Log};
use weir_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use weir_protocol::messages::{ProduceRequest, ProduceResponse};
use weir_protocol::{ErrorCode, Uuid};
use weir_records::batch::BatchHeader;
use weir_records::{RecordBatch, Records};

/// The transactional id a request names, if any (an empty one is none): its transactional
/// batches are verified with their coordinator (KIP-890) before they are appended.
pub(crate) fn transactional_id(request: &ProduceRequest) -> Option<&str> {
    request
        .transactional_id
        .as_deref()
        .filter(|id| !id.is_empty())
}

/// acks=0 gets no response.
pub(crate) fn wants_response(request: &ProduceRequest) -> bool {
    request.acks != 0
}

/// One topic of the request, resolved.
struct TopicPlan {
    name: String,
    topic_id: Uuid,
    topic: Result<Topic, ErrorCode>,
    partitions: Vec<(i32, Option<Bytes>)>,
}

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: ProduceRequest,
) -> ProduceResponse {
    append(broker, ctx, request).await.complete(broker).await
}

/// A Produce whose batches are appended and whose answer may still wait for the high
/// watermark (acks=all). The connection appends one request after another, in order, but
/// lets the waits of several overlap, answering in order (see `connection`).
pub(crate) struct Appended {
    responses: Vec<TopicProduceResponse>,
    /// What each accepted acks=all partition waits for, by (topic, partition) index.
    commits: Vec<((usize, usize), PendingAck)>,
    deadline: tokio::time::Instant,
}

impl Appended {
    /// Waits until every acks=all batch is committed (or fails with REQUEST_TIMED_OUT,
    /// NOT_LEADER_OR_FOLLOWER or NOT_ENOUGH_REPLICAS_AFTER_APPEND), then builds the response.
    pub(crate) async fn complete(self, broker: &Arc<Broker>) -> ProduceResponse {
        let Appended {
            mut responses,
            commits,
            deadline,
        } = self;
        for ((t, p), e) in broker.replicas.wait_for_acks(commits, deadline).await {
            if let Some(partition) = responses
                .get_mut(t)
                .and_then(|topic| topic.partition_responses.get_mut(p))
            {
                debug!(partition = partition.index, error = ?e, "acks=all produce not acknowledged");
                *partition = failed(partition.index, e.code(), None);
            }
        }
        let mut response = ProduceResponse {
            responses,
            ..ProduceResponse::default()
        };
        add_leader_hints(broker, &mut response);
        response
    }
}

/// Appends every partition's batch (on the blocking pool); what an acks=all answer still waits
/// for is in the result.
pub(crate) async fn append(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: ProduceRequest,
) -> Appended {
    let prepared = prepare(broker, ctx, request).await;
    let fallback = prepared.storage_errors();
    let task_broker = broker.clone();
    crate::blocking::spawn(move || prepared.append(&task_broker))
        .await
        .unwrap_or(fallback)
}

/// A Produce resolved and (KIP-890) verified, ready to append: what is left is blocking work,
/// which the connection runs on its append lane (`connection`) or [`append`] on the pool.
pub(crate) struct Prepared {
    plans: Vec<TopicPlan>,
    verified: Verified,
    acks: i16,
    deadline: tokio::time::Instant,
}

/// Resolves a request's topics and verifies its transactional batches with their coordinator:
/// everything before the appends that may wait on the network.
pub(crate) async fn prepare(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    mut request: ProduceRequest,
) -> Prepared {
    let by_id = ctx.api_version >= 13;
    let acks_valid = matches!(request.acks, -1..=1);
    let plans: Vec<TopicPlan> = std::mem::take(&mut request.topic_data)
        .into_iter()
        .map(|t| {
            let topic = if by_id {
                broker
                    .topics
                    .by_id(t.topic_id)
                    .ok_or(ErrorCode::UNKNOWN_TOPIC_ID)
            } else {
                broker
                    .topics
                    .get(&t.name)
                    .ok_or(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
            }
            // Internal topics (`__consumer_offsets`) are written by the broker only, as in
            // Kafka.
            .and_then(|topic| {
                if topic.internal {
                    Err(ErrorCode::INVALID_TOPIC_EXCEPTION)
                } else {
                    Ok(topic)
                }
            });
            TopicPlan {
                name: t.name,
                topic_id: t.topic_id,
                topic: if acks_valid {
                    topic
                } else {
                    Err(ErrorCode::INVALID_REQUIRED_ACKS)
                },
                partitions: t
                    .partition_data
                    .into_iter()
                    .map(|p| (p.index, p.records))
                    .collect(),
            }
        })
        .collect();
    let verified = match transactional_id(&request) {
        Some(transactional_id) => {
            let check = crate::transactions::TxnCheck::for_version(broker, ctx.api_version, 12);
            verify_transactional(broker, transactional_id, &plans, check).await
        }
        None => Verified::default(),
    };
    Prepared {
        plans,
        verified,
        acks: request.acks,
        deadline: tokio::time::Instant::now()
            + Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0)),
    }
}

impl Prepared {
    /// The answer when the appends could not run at all: KAFKA_STORAGE_ERROR everywhere.
    pub(crate) fn storage_errors(&self) -> Appended {
        Appended {
            responses: self
                .plans
                .iter()
                .map(|plan| {
                    topic_response(
                        plan,
                        plan.partitions
                            .iter()
                            .map(|(index, _)| failed(*index, ErrorCode::KAFKA_STORAGE_ERROR, None))
                            .collect(),
                    )
                })
                .collect(),
            commits: Vec::new(),
            deadline: self.deadline,
        }
    }

    /// Appends every partition's batch, here and now (blocking file I/O: call it on the
    /// blocking pool), and wakes waiting fetches once.
    pub(crate) fn append(self, broker: &Arc<Broker>) -> Appended {
        let Prepared {
            plans,
            verified,
            acks,
            deadline,
        } = self;
        let mut appended = false;
        let mut commits = Vec::new();
        let responses: Vec<TopicProduceResponse> = plans
            .iter()
            .enumerate()
            .map(|(t, plan)| {
                let partitions = plan
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(p, (index, records))| {
                        match (&plan.topic, verified.refused.get(&(t, p))) {
                            (Err(code), _) | (Ok(_), Some(code)) => failed(*index, *code, None),
                            (Ok(topic), None) => {
                                let guard = verified
                                    .enabled
                                    .then(|| verified.guards.get(&(t, p)).copied());
                                let (response, commit) = produce_partition(
                                    broker,
                                    topic,
                                    *index,
                                    records.as_ref(),
                                    (acks, guard),
                                );
                                appended |= response.error_code == 0;
                                if let Some(commit) = commit {
                                    commits.push(((t, p), commit));
                                }
                                response
                            }
                        }
                    })
                    .collect();
                topic_response(plan, partitions)
            })
            .collect();
        if appended {
            broker.partitions.notify_appended();
        }
        Appended {
            responses,
            commits,
            deadline,
        }
    }
}

/// What KIP-890 verification decided for a request's partitions, by (topic, partition) index
/// in the plans.
#[derive(Default)]
struct Verified {
    /// Whether the request is verified at all (it names a transactional id).
    enabled: bool,
    /// Partitions refused, with the error to answer.
    refused: HashMap<(usize, usize), ErrorCode>,
    /// Partitions whose batch would start a transaction and was verified: the guard its append
    /// presents (`ProducerTable::check_verified`).
    guards: HashMap<(usize, usize), u64>,
}

/// KIP-890 part 1: the partitions (by topic and partition index in `plans`) whose
/// transactional batch would start a transaction that the coordinator does not know of, with
/// the error to answer; and the verification guards of those it confirmed.
async fn verify_transactional(
    broker: &Arc<Broker>,
    transactional_id: &str,
    plans: &[TopicPlan],
    check: crate::transactions::TxnCheck,
) -> Verified {
    let mut verified = Verified {
        enabled: true,
        ..Verified::default()
    };
    // (topic index, partition index, topic, partition, producer) of each transactional batch.
    let mut batches = Vec::new();
    for (t, plan) in plans.iter().enumerate() {
        let Ok(topic) = &plan.topic else { continue };
        for (p, (index, records)) in plan.partitions.iter().enumerate() {
            let header = records
                .as_ref()
                .and_then(|r| BatchHeader::parse(r).ok())
                .and_then(|h| ProducerBatch::from_header(&h))
                .filter(|b| b.transactional);
            if let Some(batch) = header {
                batches.push((t, p, topic.clone(), *index, batch));
            }
        }
    }
    if batches.is_empty() {
        return verified;
    }
    // Only batches that would open a transaction on their partition need the coordinator; a
    // guard is set for each before asking, which a marker arriving meanwhile removes.
    let task_broker = broker.clone();
    let unverified = crate::blocking::spawn(move || {
        batches
            .into_iter()
            .filter_map(|(t, p, topic, index, batch)| {
                // Without a log here the append is refused later as it would be now.
                let (log, _) = task_broker.leader_log(&topic.name, index, -1).ok()?;
                let guard = task_broker
                    .producer_states
                    .with_table(&topic.name, topic.id, index, &log, |table| {
                        table.begin_verification(batch.producer_id, batch.producer_epoch)
                    })
                    .ok()??;
                Some((t, p, topic, index, batch, guard))
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (t, p, topic, index, batch, guard) in unverified {
        let code = crate::transactions::verify(
            broker,
            transactional_id,
            weir_transaction::ProducerIdAndEpoch::new(batch.producer_id, batch.producer_epoch),
            weir_transaction::TopicPartition::new(topic.name.clone(), index),
            check,
        )
        .await;
        if code == ErrorCode::NONE {
            verified.guards.insert((t, p), guard);
        } else {
            debug!(topic = %topic.name, partition = index, transactional_id, error = code.name(), "transactional produce not verified");
            verified.refused.insert((t, p), code);
        }
    }
    verified
}

/// KIP-951: a partition answered NOT_LEADER_OR_FOLLOWER names its current leader and epoch,
/// and the response lists those leaders' endpoints (encoded from v10 on).
fn add_leader_hints(broker: &Broker, response: &mut ProduceResponse) {
    let mut endpoints = std::collections::BTreeMap::new();
    for topic in &mut response.responses {
        for p in &mut topic.partition_responses {
            if p.error_code != ErrorCode::NOT_LEADER_OR_FOLLOWER.code() {
                continue;
            }
            if let Some(hint) = broker.leader_hint(&topic.name, topic.topic_id, p.index) {
                p.current_leader = LeaderIdAndEpoch {
                    leader_id: hint.leader_id,
                    leader_epoch: hint.leader_epoch,
                    ..LeaderIdAndEpoch::default()
                };
                endpoints.insert(hint.leader_id, hint);
            }
        }
    }
    response.node_endpoints = endpoints
        .into_values()
        .map(|hint| NodeEndpoint {
            node_id: hint.leader_id,
            host: hint.host,
            port: hint.port,
            rack: hint.rack,
            ..NodeEndpoint::default()
        })
        .collect();
}

fn topic_response(
    plan: &TopicPlan,
    partitions: Vec<PartitionProduceResponse>,
) -> TopicProduceResponse {
    TopicProduceResponse {
        name: plan.name.clone(),
        topic_id: plan.topic_id,
        partition_responses: partitions,
        ..TopicProduceResponse::default()
    }
}

fn failed(index: i32, code: ErrorCode, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse {
        index,
        error_code: code.code(),
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        error_message: message,
        ..PartitionProduceResponse::default()
    }
}

/// Why a partition's batch was not appended.
enum Refused {
    Log(weir_log::Error),
    Producer(ProducerError),
}

impl From<weir_log::Error> for Refused {
    fn from(e: weir_log::Error) -> Self {
        Refused::Log(e)
    }
}

/// What became of an accepted batch.
enum Accepted {
    Appended(AppendInfo),
    /// A retry of an earlier batch, which keeps its original offsets.
    Duplicate(BatchMetadata),
}

/// Appends one partition's batch on the blocking pool; for a batch accepted with acks=all,
/// also what its acknowledgement waits for.
/// `guard`: `None` when the request is not verified (no transactional id), else the
/// verification guard of the partition's batch, if it was verified.
fn produce_partition(
    broker: &Arc<Broker>,
    topic: &Topic,
    index: i32,
    records: Option<&Bytes>,
    (acks, guard): (i16, Option<Option<u64>>),
) -> (PartitionProduceResponse, Option<PendingAck>) {
    let (replica, leader_epoch) = match broker.leader_replica(&topic.name, index, -1) {
        Ok(found) => found,
        Err(code) => return (failed(index, code, None), None),
    };
    let response = {
        // Held across the append: the replica cannot turn follower (and take replicated
        // batches) in the middle of it. The role lock itself is let go before the write.
        let _writing = replica.writes.read();
        match &*replica.role.lock() {
            Role::Leader(leader) if leader.leader_epoch() == leader_epoch => {
                if acks == -1 {
                    if let Err(e) = leader.check_min_isr() {
                        debug!(topic = %topic.name, partition = index, error = %e, "produce refused");
                        return (
                            failed(index, ErrorCode::NOT_ENOUGH_REPLICAS, Some(e.to_string())),
                            None,
                        );
                    }
                }
            }
            _ => return (failed(index, ErrorCode::NOT_LEADER_OR_FOLLOWER, None), None),
        }
        append_partition(
            broker,
            topic,
            index,
            records,
            (&replica.log, leader_epoch),
            guard,
        )
    };
    if response.0.error_code != 0 {
        return (response.0, None);
    }
    broker.replicas.local_log_end_offset_moved(&replica);
    // Only acks=all waits for the high watermark.
    let commit = (acks == -1).then(|| PendingAck {
        replica,
        leader_epoch,
        end_offset: response.1,
    });
    (response.0, commit)
}

/// Appends one partition's batch; returns the answer and, when accepted, one past the last
/// offset of the batch (or of the original, for a duplicate).
fn append_partition(
    broker: &Broker,
    topic: &Topic,
    index: i32,
    records: Option<&Bytes>,
    (log, leader_epoch): (&Arc<Log>, i32),
    guard: Option<Option<u64>>,
) -> (PartitionProduceResponse, i64) {
    let records: &[u8] = records.map_or(&[], |r| r.as_ref());
    let header = match single_batch(records) {
        Ok(header) => header,
        Err((code, message)) => {
            debug!(topic = %topic.name, partition = index, message, "produce refused");
            return (failed(index, code, Some(message.to_string())), -1);
        }
    };
    let result = match ProducerBatch::from_header(&header) {
        None => Partitions::append_blocking(log, records, leader_epoch)
            .map(Accepted::Appended)
            .map_err(Refused::Log),
        Some(batch) => append_idempotent(
            broker,
            topic,
            index,
            (log, leader_epoch),
            records,
            (&batch, guard),
        ),
    };
    if let Ok(Accepted::Appended(_)) = &result {
        broker.metrics.bytes_in(&topic.name, records.len() as u64);
    }
    match result {
        Ok(Accepted::Appended(info)) => (
            PartitionProduceResponse {
                index,
                error_code: 0,
                base_offset: info.first_offset,
                log_append_time_ms: info.log_append_time,
                log_start_offset: info.log_start_offset,
                ..PartitionProduceResponse::default()
            },
            info.last_offset + 1,
        ),
        Ok(Accepted::Duplicate(original)) => {
            debug!(topic = %topic.name, partition = index, offset = original.first_offset, "duplicate batch acknowledged with its original offsets");
            (
                PartitionProduceResponse {
                    index,
                    error_code: 0,
                    base_offset: original.first_offset,
                    log_append_time_ms: original.log_append_time,
                    log_start_offset: log.log_start_offset(),
                    ..PartitionProduceResponse::default()
                },
                original.last_offset + 1,
            )
        }
        Err(Refused::Producer(e)) => {
            debug!(topic = %topic.name, partition = index, error = %e, "produce refused");
            (
                failed(index, producer_error_code(&e), Some(e.to_string())),
                -1,
            )
        }
        Err(Refused::Log(e)) => {
            let code = log_error_code(&e);
            let message = match std::error::Error::source(&e) {
                Some(source) => format!("{e}: {source}"),
                None => e.to_string(),
            };
            debug!(topic = %topic.name, partition = index, error = %message, "produce refused");
            (
                PartitionProduceResponse {
                    record_errors: record_errors(&e, records, log),
                    ..failed(index, code, Some(message))
                },
                -1,
            )
        }
    }
}

/// Checks that `records` holds exactly one v2 batch, as Kafka requires of Produce v3+.
fn single_batch(records: &[u8]) -> Result<BatchHeader, (ErrorCode, &'static str)> {
    if records.is_empty() {
        return Err((
            ErrorCode::INVALID_RECORD,
            "a produce request must carry exactly one record batch per partition",
        ));
    }
    let header = BatchHeader::parse(records).map_err(|e| match e {
        weir_records::Error::UnsupportedMagic(_) => (
            ErrorCode::INVALID_RECORD,
            "produce requests v3 and later must use record batches of magic 2",
        ),
        _ => (ErrorCode::CORRUPT_MESSAGE, "malformed record batch header"),
    })?;
    // Markers are the leader's to write (WriteTxnMarkers): one from a client would end a
    // transaction behind the producer state's back. Kafka refuses them the same way.
    if header.attributes.is_control() {
        return Err((
            ErrorCode::INVALID_RECORD,
            "clients cannot append control batches",
        ));
    }
    match header.size().cmp(&records.len()) {
        std::cmp::Ordering::Equal => Ok(header),
        std::cmp::Ordering::Greater => {
            Err((ErrorCode::CORRUPT_MESSAGE, "the record batch is truncated"))
        }
        std::cmp::Ordering::Less => Err((
            ErrorCode::INVALID_RECORD,
            "a produce request must carry exactly one record batch per partition",
        )),
    }
}

/// Checks the producer's sequence, appends, and records where the batch landed, all under
/// the partition's producer lock so concurrent appends cannot interleave with the check.
fn append_idempotent(
    broker: &Broker,
    topic: &Topic,
    index: i32,
    (log, leader_epoch): (&Log, i32),
    records: &[u8],
    (batch, verification): (&ProducerBatch, Option<Option<u64>>),
) -> Result<Accepted, Refused> {
    broker
        .producer_states
        .with_table(&topic.name, topic.id, index, log, |table| {
            // KIP-890: a verified request's batch may start a transaction only on a standing
            // verification (a retry of a batch already appended is let through to `check`).
            let verified = match verification {
                Some(presented) => table.check_verified(batch, presented),
                None => Ok(()),
            };
            match verified.and_then(|()| table.check(batch)) {
                Err(e) => Err(Refused::Producer(e)),
                Ok(Verdict::Duplicate(original)) => Ok(Accepted::Duplicate(original)),
                Ok(Verdict::Append) => {
                    let info = Partitions::append_blocking(log, records, leader_epoch)?;
                    table.record(
                        batch,
                        BatchMetadata {
                            first_sequence: batch.first_sequence,
                            last_sequence: batch.last_sequence,
                            first_offset: info.first_offset,
                            last_offset: info.last_offset,
                            log_append_time: info.log_append_time,
                        },
                        wall_clock_ms(),
                    );
                    // Idle producers are expired by a periodic check (server.rs), not here:
                    // the batch just checked must see the state its producer left.
                    Ok(Accepted::Appended(info))
                }
            }
        })?
}

/// The records a refused batch was refused for (KIP-467), where the log's error tells:
/// out-of-range timestamps, and keyless records on a compacted topic.
fn record_errors(
    error: &weir_log::Error,
    records: &[u8],
    log: &Log,
) -> Vec<BatchIndexAndErrorMessage> {
    let decoded = || -> Option<Records> {
        RecordBatch::new(Bytes::copy_from_slice(records))
            .ok()?
            .records()
            .ok()
    };
    let matching = |wanted: &dyn Fn(&weir_records::Record) -> bool, message: String| {
        decoded()
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, r)| {
                let r = r.ok()?;
                wanted(&r).then(|| BatchIndexAndErrorMessage {
                    batch_index: i32::try_from(i).unwrap_or(i32::MAX),
                    batch_index_error_message: Some(message.clone()),
                    ..BatchIndexAndErrorMessage::default()
                })
            })
            .collect()
    };
    match error {
        weir_log::Error::InvalidTimestamp { timestamp, .. } => matching(
            &|r| r.timestamp == *timestamp,
            format!("timestamp {timestamp} is out of the accepted range"),
        ),
        weir_log::Error::InvalidRecords { .. } if log.config().cleanup_policy.compact => matching(
            &|r| r.key.is_none(),
            "compacted topics cannot accept records without a key".to_string(),
        ),
        _ => Vec::new(),
    }
}
