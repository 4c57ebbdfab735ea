//! Fetch: whole record batches from partitions, with long polling.
//!
//! - Topics by name (v4-12) or id (v13+); the response answers by the same key.
//! - Long poll: when the first read finds fewer than `min_bytes` (and no partition has an
//!   error), the request waits on the partition manager's append signal until an append to a
//!   requested partition, then reads again, until `max_wait_ms` has passed or the server shuts
//!   down (then it answers at once, so a graceful stop never waits out a long poll). No polling.
//! - Limits (KIP-74): each partition reads at most `partition_max_bytes` and the response at
//!   most `max_bytes` (never more than the broker's `fetch.max.bytes`), except that the first partition with data returns its first batch
//!   whole however large it is, so a consumer can always make progress.
//! - Consumers read up to the high watermark (see `replication`) with READ_UNCOMMITTED, and up
//!   to the last stable offset with READ_COMMITTED: below the high watermark and the first
//!   offset of every ongoing transaction (see `producer_state`). Every answer reports the last
//!   stable offset; a READ_COMMITTED one also lists the aborted transactions overlapping the
//!   records it returns (from the transaction index, `Log::aborted_transactions`), whose
//!   records the consumer drops, as Kafka does.
//! - Followers (a `replica_id`, or from v15 `replica_state.replica_id`, of 0 or more) read up
//!   to the log end offset, and their fetch offset is their progress: it moves the high
//!   watermark and the ISR. A replica id that is not a replica of the partition gets
//!   NOT_LEADER_OR_FOLLOWER. Like Kafka without authorization, the broker trusts the id.
//! - Fetch sessions (KIP-227) are never created: every response has session id 0, which tells
//!   clients to keep sending full fetch requests (each lists every partition, and gets every
//!   partition back). An incremental request (epoch > 0) names a session this broker never
//!   gave out and gets FETCH_SESSION_ID_NOT_FOUND, as from Kafka after a restart; clients then
//!   start over with a full fetch. Forgotten topics only matter to sessions and are ignored,
//!   as is the rack (no fetching from the closest replica yet).
//! - Records are read into memory (`LogSlice::to_bytes`); sendfile is a later optimisation.

use crate::connection::RequestContext;
use crate::error::log_error_code;
use crate::state::Broker;
use crate::topics::Topic;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::debug;
use weir_protocol::messages::fetch_request::FetchPartition;
use weir_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use weir_protocol::messages::{FetchRequest, FetchResponse};
use weir_protocol::{ErrorCode, Uuid};

super::always_responds!(FetchRequest);

/// `isolation_level` READ_COMMITTED.
const READ_COMMITTED: i8 = 1;

/// One topic of the request, resolved.
struct TopicFetch {
    name: String,
    topic_id: Uuid,
    topic: Result<Topic, ErrorCode>,
    partitions: Vec<FetchPartition>,
}

/// One read pass over every requested partition.
struct Pass {
    responses: Vec<FetchableTopicResponse>,
    bytes: usize,
    /// A partition has an error: answer at once, as Kafka does.
    error: bool,
    /// The log end offset of each partition read, in request order (-1 when unknown).
    log_ends: Vec<i64>,
}

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: FetchRequest,
) -> FetchResponse {
    if ctx.api_version >= 7 && request.session_epoch > 0 {
        debug!(
            session_id = request.session_id,
            epoch = request.session_epoch,
            "incremental fetch for an unknown session"
        );
        return FetchResponse {
            error_code: ErrorCode::FETCH_SESSION_ID_NOT_FOUND.code(),
            session_id: 0,
            ..FetchResponse::default()
        };
    }
    let by_id = ctx.api_version >= 13;
    let topics: Arc<Vec<TopicFetch>> = Arc::new(
        request
            .topics
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
                        .get(&t.topic)
                        .ok_or(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
                };
                TopicFetch {
                    name: t.topic,
                    topic_id: t.topic_id,
                    topic,
                    partitions: t.partitions,
                }
            })
            .collect(),
    );
    let replica_id = if ctx.api_version >= 15 {
        request.replica_state.replica_id
    } else {
        request.replica_id
    };
    let limits = Limits {
        // `fetch.max.bytes` caps every response, whatever the client asks for (v0-v2 carry
        // no total at all).
        max_bytes: usize::try_from(request.max_bytes)
            .unwrap_or(0)
            .min(usize::try_from(broker.config().fetch_max_bytes).unwrap_or(usize::MAX)),
        read_committed: request.isolation_level == READ_COMMITTED,
        follower: (replica_id >= 0).then_some(replica_id),
    };
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let deadline =
        Instant::now() + Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
    // Subscribe before the first read so that an append between the read and the wait is
    // not missed.
    let mut appended = broker.partitions.subscribe();
    let mut pass = read(broker, &topics, limits).await;
    loop {
        // As Kafka: answer at once on an error, with enough data, or when there is nothing
        // to wait for; and at shutdown, so the connection can finish and close.
        if pass.error
            || pass.bytes >= min_bytes
            || topics.is_empty()
            || Instant::now() >= deadline
            || broker.partitions.closing()
        {
            break;
        }
        match tokio::time::timeout_at(deadline, appended.changed()).await {
            // Something was appended somewhere: read again only if it was one of ours.
            Ok(Ok(())) => {
                if log_ends(broker, &topics, limits) != pass.log_ends {
                    pass = read(broker, &topics, limits).await;
                }
            }
            Ok(Err(_)) => break,
            Err(_) => {
                // Waited max_wait_ms; answer with what there is now.
                if log_ends(broker, &topics, limits) != pass.log_ends {
                    pass = read(broker, &topics, limits).await;
                }
                break;
            }
        }
    }
    // Count only what is actually sent: earlier passes of a long poll are discarded.
    for (t, response) in topics.iter().zip(&pass.responses) {
        if let Ok(topic) = &t.topic {
            let bytes: usize = response
                .partitions
                .iter()
                .map(|p| p.records.as_ref().map_or(0, Bytes::len))
                .sum();
            if bytes > 0 {
                broker.metrics.bytes_out(&topic.name, bytes as u64);
            }
        }
    }
    let mut response = FetchResponse {
        error_code: 0,
        session_id: 0,
        responses: pass.responses,
        ..FetchResponse::default()
    };
    add_leader_hints(broker, &mut response);
    response
}

/// KIP-951: a partition answered NOT_LEADER_OR_FOLLOWER names its current leader and epoch,
/// and the response lists those leaders' endpoints (encoded from v16 on).
fn add_leader_hints(broker: &Broker, response: &mut FetchResponse) {
    use weir_protocol::messages::fetch_response::{LeaderIdAndEpoch, NodeEndpoint};
    let mut endpoints = std::collections::BTreeMap::new();
    for topic in &mut response.responses {
        for p in &mut topic.partitions {
            if p.error_code != ErrorCode::NOT_LEADER_OR_FOLLOWER.code() {
                continue;
            }
            if let Some(hint) = broker.leader_hint(&topic.topic, topic.topic_id, p.partition_index)
            {
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

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_bytes: usize,
    read_committed: bool,
    /// The fetching follower's broker id; `None` for a consumer.
    follower: Option<i32>,
}

/// Where a read of a partition ends: the high watermark for READ_UNCOMMITTED consumers, the
/// last stable offset for READ_COMMITTED ones, the log end offset for followers.
fn readable_end(broker: &Broker, topic: &Topic, partition: i32, limits: Limits) -> i64 {
    let Some(replica) = broker.replicas.get(&topic.name, partition) else {
        return -1;
    };
    match limits.follower {
        Some(_) => replica.log.log_end_offset(),
        None if limits.read_committed => broker
            .producer_states
            .last_stable_offset(
                &topic.name,
                topic.id,
                partition,
                &replica.log,
                replica.high_watermark(),
            )
            .unwrap_or(-1),
        None => replica.high_watermark(),
    }
}

/// The current readable ends of the requested partitions, in request order.
fn log_ends(broker: &Broker, topics: &[TopicFetch], limits: Limits) -> Vec<i64> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| match &t.topic {
                Ok(topic) => readable_end(broker, topic, p.partition, limits),
                Err(_) => -1,
            })
        })
        .collect()
}

/// Reads every requested partition on the blocking pool.
async fn read(broker: &Arc<Broker>, topics: &Arc<Vec<TopicFetch>>, limits: Limits) -> Pass {
    let task_broker = broker.clone();
    let task_topics = topics.clone();
    match crate::blocking::spawn(move || read_blocking(&task_broker, &task_topics, limits)).await {
        Ok(pass) => pass,
        Err(_) => Pass {
            responses: topics
                .iter()
                .map(|t| FetchableTopicResponse {
                    topic: t.name.clone(),
                    topic_id: t.topic_id,
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| failed(p.partition, ErrorCode::KAFKA_STORAGE_ERROR))
                        .collect(),
                    ..FetchableTopicResponse::default()
                })
                .collect(),
            bytes: 0,
            error: true,
            log_ends: Vec::new(),
        },
    }
}

fn failed(partition_index: i32, code: ErrorCode) -> PartitionData {
    PartitionData {
        partition_index,
        error_code: code.code(),
        high_watermark: -1,
        last_stable_offset: -1,
        log_start_offset: -1,
        aborted_transactions: None,
        records: Some(Bytes::new()),
        ..PartitionData::default()
    }
}

fn read_blocking(broker: &Arc<Broker>, topics: &[TopicFetch], limits: Limits) -> Pass {
    let mut pass = Pass {
        responses: Vec::with_capacity(topics.len()),
        bytes: 0,
        error: false,
        log_ends: Vec::new(),
    };
    let mut remaining = limits.max_bytes;
    // KIP-74: the first batch of the first partition with data is returned whole.
    let mut first = true;
    for t in topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let topic = match &t.topic {
                Ok(topic) => topic,
                Err(code) => {
                    pass.error = true;
                    pass.log_ends.push(-1);
                    partitions.push(failed(p.partition, *code));
                    continue;
                }
            };
            let found = broker
                .leader_replica(&topic.name, p.partition, p.current_leader_epoch)
                .and_then(|(replica, _)| {
                    if let Some(follower) = limits.follower {
                        broker.replicas.follower_fetched(
                            broker,
                            &replica,
                            follower,
                            p.fetch_offset,
                        )?;
                    }
                    Ok(replica)
                });
            let replica = match found {
                Ok(found) => found,
                Err(code) => {
                    pass.error = true;
                    pass.log_ends.push(-1);
                    let mut data = failed(p.partition, code);
                    // A follower past the leader's start learns where the log starts now.
                    if code == ErrorCode::OFFSET_OUT_OF_RANGE {
                        if let Some(log) = broker.partitions.log(&topic.name, p.partition) {
                            data.log_start_offset = log.log_start_offset();
                        }
                    }
                    partitions.push(data);
                    continue;
                }
            };
            let log = &replica.log;
            let high_watermark = replica.high_watermark();
            let last_stable_offset = match broker.producer_states.last_stable_offset(
                &topic.name,
                topic.id,
                p.partition,
                log,
                high_watermark,
            ) {
                Ok(offset) => offset,
                Err(e) => {
                    debug!(topic = %topic.name, partition = p.partition, error = %e, "cannot load the producer state");
                    pass.error = true;
                    pass.log_ends.push(-1);
                    partitions.push(failed(p.partition, log_error_code(&e)));
                    continue;
                }
            };
            let end = match limits.follower {
                Some(_) => log.log_end_offset(),
                None if limits.read_committed => last_stable_offset,
                None => high_watermark,
            };
            pass.log_ends.push(end);
            let mut data = PartitionData {
                partition_index: p.partition,
                error_code: 0,
                high_watermark,
                last_stable_offset,
                log_start_offset: log.log_start_offset(),
                aborted_transactions: limits.read_committed.then(Vec::new),
                preferred_read_replica: -1,
                records: Some(Bytes::new()),
                ..PartitionData::default()
            };
            let limit = usize::try_from(p.partition_max_bytes)
                .unwrap_or(0)
                .min(remaining);
            if limit == 0 && !first {
                partitions.push(data);
                continue;
            }
            let read = log.read(p.fetch_offset, limit, end).and_then(|slice| {
                if slice.is_empty() || (!first && slice.len() > limit) {
                    Ok((Bytes::new(), p.fetch_offset))
                } else {
                    Ok((slice.to_bytes()?, slice.next_offset()))
                }
            });
            match read {
                Ok((records, next_offset)) => {
                    if !records.is_empty() {
                        first = false;
                        remaining = remaining.saturating_sub(records.len());
                        pass.bytes += records.len();
                        if limits.read_committed && limits.follower.is_none() {
                            data.aborted_transactions = Some(
                                log.aborted_transactions(p.fetch_offset, next_offset)
                                    .into_iter()
                                    .map(|txn| AbortedTransaction {
                                        producer_id: txn.producer_id,
                                        first_offset: txn.first_offset,
                                        ..AbortedTransaction::default()
                                    })
                                    .collect(),
                            );
                        }
                    }
                    data.records = Some(records);
                }
                Err(e) => {
                    debug!(topic = %topic.name, partition = p.partition, offset = p.fetch_offset, error = %e, "fetch refused");
                    pass.error = true;
                    data.error_code = log_error_code(&e).code();
                }
            }
            partitions.push(data);
        }
        pass.responses.push(FetchableTopicResponse {
            topic: t.name.clone(),
            topic_id: t.topic_id,
            partitions,
            ..FetchableTopicResponse::default()
        });
    }
    pass
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use std::collections::BTreeMap;
    use weir_protocol::messages::fetch_request::FetchTopic;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_fetch_answers_when_the_server_shuts_down() {
        let dir = tempfile::tempdir().unwrap();
        let mut props = BTreeMap::new();
        props.insert("log.dirs".to_string(), dir.path().display().to_string());
        props.insert("offsets.topic.num.partitions".to_string(), "1".to_string());
        let broker = Broker::open(BrokerConfig::from_properties(props).unwrap(), None)
            .await
            .unwrap();
        let b = broker.clone();
        crate::blocking::spawn(move || b.create_topic("t", 1, BTreeMap::new()).unwrap())
            .await
            .unwrap();
        let request = FetchRequest {
            max_wait_ms: 600_000,
            min_bytes: 1,
            max_bytes: 1 << 20,
            session_epoch: -1,
            topics: vec![FetchTopic {
                topic: "t".into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    fetch_offset: 0,
                    partition_max_bytes: 1 << 20,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let ctx = RequestContext {
            api_version: 12,
            correlation_id: 1,
            client_id: None,
            peer: "127.0.0.1:1".parse().unwrap(),
        };
        let waiting = {
            let broker = broker.clone();
            tokio::spawn(async move { handle(&broker, &ctx, request).await })
        };
        // The fetch holds a subscription to the append signal while it waits.
        while broker.partitions.waiting_fetches() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());
        broker.partitions.stop_waiting();
        // Far below the 10-minute max_wait_ms: the fetch answers as soon as it is woken.
        let response = tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("the waiting fetch did not answer at shutdown")
            .unwrap();
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        assert_eq!(partition.high_watermark, 0);
        // Fetches arriving after the shutdown began do not wait at all.
        let ctx = RequestContext {
            api_version: 12,
            correlation_id: 2,
            client_id: None,
            peer: "127.0.0.1:1".parse().unwrap(),
        };
        let late = FetchRequest {
            max_wait_ms: 600_000,
            min_bytes: 1,
            session_epoch: -1,
            topics: vec![FetchTopic {
                topic: "t".into(),
                partitions: vec![FetchPartition::default()],
                ..Default::default()
            }],
            ..Default::default()
        };
        tokio::time::timeout(Duration::from_secs(30), handle(&broker, &ctx, late))
            .await
            .expect("a fetch after shutdown waited");
    }
}
