//! The sender task, which decides which batches are sendable, and one task per broker, which
//! turns them into Produce requests in order and hands the responses back.
//!
//! Ordering with idempotence: sequence numbers are assigned when a batch is first drained, in
//! queue order; a broker task writes its requests in the order it receives them, and the
//! broker handles a connection's requests in order. A batch that fails retriably goes back to
//! the front of its queue in sequence order, and its partition sends one batch at a time until
//! the retry succeeds, so later batches (which the broker refuses as OUT_OF_ORDER_SEQUENCE
//! meanwhile) follow it again in order. A retried batch is re-sent byte for byte, so the broker
//! recognises it as a duplicate if the first attempt was in fact appended.

use super::Acks;
use super::accumulator::{Batch, ProducerIdentity, Shared, add_sequence, until};
use super::transaction::{self, PartitionKey};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use weir_protocol::ErrorCode;
use weir_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use weir_protocol::messages::produce_response::PartitionProduceResponse;
use weir_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProduceResponse};
use weir_records::RecordBatchBuilder;

/// Batches bound for one broker, in the order they must be written.
type Outgoing = Vec<Batch>;

/// Asks for a producer id (retrying retriable errors within the delivery timeout) and resets
/// every partition's sequence.
pub(crate) async fn init_producer_id(shared: &Shared) -> Result<()> {
    let deadline = Instant::now() + shared.config.delivery_timeout;
    let mut backoff = shared.client.retry_backoff();
    loop {
        let request = InitProducerIdRequest {
            transactional_id: None,
            transaction_timeout_ms: i32::MAX,
            producer_id: -1,
            producer_epoch: -1,
            ..InitProducerIdRequest::default()
        };
        let error = match shared.client.send_any(request).await {
            Ok((response, _)) if response.error_code == 0 => {
                let mut state = shared.state.lock();
                state.producer = ProducerIdentity {
                    id: response.producer_id,
                    epoch: response.producer_epoch,
                };
                state.needs_producer_id = false;
                for queue in state.partitions.values_mut() {
                    queue.next_sequence = 0;
                }
                return Ok(());
            }
            Ok((response, _)) => Error::kafka(ErrorCode(response.error_code)),
            Err(err) => err,
        };
        if !error.is_retriable() || Instant::now() >= deadline {
            return Err(error);
        }
        tokio::time::sleep(backoff.next()).await;
    }
}

/// The sender loop: runs until the producer is closed and everything enqueued is complete.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut brokers: HashMap<i32, mpsc::UnboundedSender<Outgoing>> = HashMap::new();
    let mut initializing = false;
    let (init_done_tx, mut init_done) = mpsc::unbounded_channel::<Result<()>>();
    let mut refreshing = false;
    let (refresh_done_tx, mut refresh_done) = mpsc::unbounded_channel::<()>();
    loop {
        let mut round = collect(&shared);
        if !round.needs_add.is_empty() {
            // One AddPartitionsToTxn at a time, with every partition waiting for one.
            let start = match shared.state.lock().txn.as_mut() {
                Some(txn) if txn.adding.is_empty() && !txn.failed() => {
                    txn.adding.extend(round.needs_add.iter().cloned());
                    true
                }
                _ => false,
            };
            if start {
                let partitions = std::mem::take(&mut round.needs_add);
                tokio::spawn(transaction::add_partitions(shared.clone(), partitions));
            }
        }
        if round.needs_producer_id && !initializing {
            initializing = true;
            let shared = shared.clone();
            let done = init_done_tx.clone();
            tokio::spawn(async move {
                let _ = done.send(init_producer_id(&shared).await);
            });
        }
        // Also refresh what `metadata.max.age.ms` says is old: appends trust the producer's
        // cache of partition counts until the metadata changes.
        if (round.needs_metadata || shared.client.needs_refresh()) && !refreshing {
            refreshing = true;
            let shared = shared.clone();
            let done = refresh_done_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(shared.client.config().retry_backoff).await;
                if let Err(err) = shared.client.refresh_metadata().await {
                    tracing::debug!(%err, "metadata refresh for the producer failed");
                }
                let _ = done.send(());
            });
        }
        for (broker, batches) in round.outgoing {
            let tx = brokers.entry(broker).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(broker_task(shared.clone(), broker, rx));
                tx
            });
            if let Err(mpsc::error::SendError(batches)) = tx.send(batches) {
                for batch in batches {
                    shared.complete(batch, Err(Error::Closed));
                }
            }
        }
        if round.closed && shared.pending() == 0 {
            break;
        }
        tokio::select! {
            () = shared.wake.notified() => {}
            () = sleep_until(round.next_wake) => {}
            Some(result) = init_done.recv() => {
                initializing = false;
                if let Err(err) = result {
                    fail_unsent(&shared, &err);
                }
            }
            Some(()) = refresh_done.recv() => refreshing = false,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep(until(deadline)).await,
        None => std::future::pending().await,
    }
}

/// What one pass over the queues found.
#[derive(Default)]
struct Round {
    outgoing: HashMap<i32, Outgoing>,
    next_wake: Option<Instant>,
    needs_metadata: bool,
    needs_producer_id: bool,
    /// Partitions with batches to send that are not in the transaction yet.
    needs_add: Vec<PartitionKey>,
    closed: bool,
}

/// Closes lingering batches that are due, fails expired ones and drains sendable ones.
fn collect(shared: &Shared) -> Round {
    let now = Instant::now();
    let config = &shared.config;
    let mut round = Round::default();
    let mut expired = Vec::new();
    let mut failed = Vec::new();
    let mut guard = shared.state.lock();
    let state = &mut *guard;
    round.closed = state.closed;
    let hurry = state.flushing > 0 || state.closed;
    let producer = state.producer;
    let idempotent = config.enable_idempotence;
    let waiting_for_id = idempotent && (state.needs_producer_id || producer.id < 0);
    // A transactional producer gets its id from init_transactions only.
    round.needs_producer_id = waiting_for_id && state.txn.is_none();
    // Once the transaction failed, nothing more of it is sent.
    let failure = state
        .txn
        .as_ref()
        .filter(|t| t.failed())
        .map(|t| t.failure());
    let wake_at = |round: &mut Round, at: Instant| {
        round.next_wake = Some(round.next_wake.map_or(at, |w| w.min(at)));
    };
    for ((topic, partition), queue) in state.partitions.iter_mut() {
        if let Some(failure) = &failure {
            failed.extend(
                queue
                    .open
                    .take()
                    .into_iter()
                    .chain(queue.ready.drain(..))
                    .map(|batch| (batch, failure.duplicate())),
            );
            continue;
        }
        if let Some(open) = &queue.open {
            let due = open.created + config.linger;
            if hurry || due <= now {
                if let Some(batch) = queue.open.take() {
                    queue.ready.push_back(batch);
                }
            } else {
                wake_at(&mut round, due);
            }
        }
        // Batches never sent can expire without leaving a sequence gap.
        while let Some(front) = queue.ready.front() {
            if front.sequence.is_none() && front.created + config.delivery_timeout <= now {
                if let Some(batch) = queue.ready.pop_front() {
                    expired.push(batch);
                }
            } else {
                break;
            }
        }
        let limit = if queue.retrying {
            1
        } else {
            config.max_in_flight
        };
        while queue.in_flight < limit {
            let Some(front) = queue.ready.front() else {
                break;
            };
            if let Some(at) = front.retry_at {
                if at > now {
                    wake_at(&mut round, at);
                    break;
                }
            }
            if waiting_for_id {
                break;
            }
            if let Some(txn) = &state.txn {
                let key = (topic.clone(), *partition);
                if !txn.added.contains(&key) {
                    if !txn.adding.contains(&key) {
                        round.needs_add.push(key);
                    }
                    break;
                }
            }
            let Some(leader) = shared.client.cached_leader(topic, *partition) else {
                round.needs_metadata = true;
                wake_at(&mut round, now + shared.client.config().retry_backoff);
                break;
            };
            let Some(mut batch) = queue.ready.pop_front() else {
                break;
            };
            if idempotent {
                let stale = batch.sequence.is_some_and(|(id, _, _)| id != producer.id);
                if batch.sequence.is_none() || stale {
                    batch.sequence = Some((producer.id, producer.epoch, queue.next_sequence));
                    queue.next_sequence = add_sequence(queue.next_sequence, batch.count);
                }
            }
            queue.in_flight += 1;
            round.outgoing.entry(leader).or_default().push(batch);
        }
    }
    drop(guard);
    for batch in expired {
        shared.complete(batch, Err(Error::Timeout(config.delivery_timeout)));
    }
    for (batch, err) in failed {
        shared.complete(batch, Err(err));
    }
    round
}

/// Fails every batch that was never sent (the producer id could not be obtained).
fn fail_unsent(shared: &Shared, err: &Error) {
    let mut failed = Vec::new();
    {
        let mut state = shared.state.lock();
        for queue in state.partitions.values_mut() {
            failed.extend(queue.open.take());
            failed.extend(queue.ready.drain(..));
        }
    }
    for batch in failed {
        shared.complete(batch, Err(err.duplicate()));
    }
}

/// Writes one broker's batches as Produce requests, in the order received.
async fn broker_task(shared: Arc<Shared>, broker: i32, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    while let Some(batches) = rx.recv().await {
        let connection = match shared.client.connection(broker).await {
            Ok(connection) => connection,
            Err(err) => {
                for batch in batches {
                    retry_or_fail(&shared, batch, err.duplicate());
                }
                continue;
            }
        };
        for request in split_requests(batches, shared.config.max_request_size) {
            let mut ready = Vec::with_capacity(request.len());
            for mut batch in request {
                let transactional = shared.config.transactional_id.is_some();
                match encode(shared.config.compression, transactional, &mut batch) {
                    Ok(()) => ready.push(batch),
                    Err(err) => finish(&shared, batch, Err(err)),
                }
            }
            if ready.is_empty() {
                continue;
            }
            let produce = produce_request(&shared, &ready);
            if shared.config.acks == Acks::None {
                match connection.dispatch_no_response(&produce) {
                    Ok(_) => {
                        for batch in ready {
                            finish(&shared, batch, Ok((-1, -1)));
                        }
                    }
                    Err(err) => {
                        for batch in ready {
                            finish(&shared, batch, Err(err.duplicate()));
                        }
                    }
                }
                continue;
            }
            match connection.dispatch(&produce) {
                Ok((_, response)) => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let response = response.await;
                        handle_response(&shared, ready, response);
                    });
                }
                Err(err) => {
                    for batch in ready {
                        retry_or_fail(&shared, batch, err.duplicate());
                    }
                }
            }
        }
    }
}

/// Groups batches into requests of at most `max_size` bytes, with at most one batch per
/// partition in each (brokers accept one batch per partition per request), keeping each
/// partition's batches in order across requests.
fn split_requests(batches: Vec<Batch>, max_size: usize) -> Vec<Vec<Batch>> {
    let mut requests: Vec<(usize, Vec<Batch>)> = Vec::new();
    let mut last_request_of: HashMap<(Arc<str>, i32), usize> = HashMap::new();
    for batch in batches {
        let key = (batch.topic.clone(), batch.partition);
        let earliest = last_request_of.get(&key).map_or(0, |i| i + 1);
        let slot = (earliest..requests.len()).find(|&i| {
            requests
                .get(i)
                .is_some_and(|(size, _)| size + batch.size <= max_size)
        });
        let index = match slot {
            Some(i) => i,
            None => {
                requests.push((0, Vec::new()));
                requests.len() - 1
            }
        };
        if let Some((size, request)) = requests.get_mut(index) {
            *size += batch.size;
            request.push(batch);
        }
        last_request_of.insert(key, index);
    }
    requests.into_iter().map(|(_, r)| r).collect()
}

/// Encodes the batch once; the records move into the encoding. A batch sequenced again under
/// a new producer id (after a reset) is decoded and encoded afresh, which is rare.
fn encode(
    compression: weir_records::Compression,
    transactional: bool,
    batch: &mut Batch,
) -> Result<()> {
    let (id, epoch, sequence) = batch.sequence.unwrap_or((-1, -1, -1));
    if let Some(encoded) = &batch.encoded {
        let header = weir_records::batch::BatchHeader::parse(encoded)?;
        if (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
        ) == (id, epoch, sequence)
        {
            return Ok(());
        }
        let records = weir_records::RecordBatch::new(encoded.clone())?.records()?;
        batch.records = records.collect::<weir_records::Result<Vec<_>>>()?;
    }
    let mut builder = RecordBatchBuilder::new();
    builder.compression(compression);
    if batch.sequence.is_some() {
        builder.producer(id, epoch, sequence);
        builder.transactional(transactional);
    }
    for record in batch.records.drain(..) {
        builder.push(record);
    }
    batch.encoded = Some(builder.build()?);
    Ok(())
}

fn produce_request(shared: &Shared, batches: &[Batch]) -> ProduceRequest {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for batch in batches {
        let data = PartitionProduceData {
            index: batch.partition,
            records: batch.encoded.clone(),
            ..PartitionProduceData::default()
        };
        match topics.iter_mut().find(|t| *t.name == *batch.topic) {
            Some(topic) => topic.partition_data.push(data),
            None => topics.push(TopicProduceData {
                name: batch.topic.to_string(),
                partition_data: vec![data],
                ..TopicProduceData::default()
            }),
        }
    }
    ProduceRequest {
        transactional_id: shared.config.transactional_id.clone(),
        acks: shared.config.acks.wire_value(),
        timeout_ms: i32::try_from(shared.client.config().request_timeout.as_millis())
            .unwrap_or(i32::MAX),
        topic_data: topics,
        ..ProduceRequest::default()
    }
}

/// Matches each batch with its partition's result.
fn handle_response(shared: &Shared, batches: Vec<Batch>, response: Result<ProduceResponse>) {
    let response = match response {
        Ok(response) => response,
        Err(err) => {
            for batch in batches {
                retry_or_fail(shared, batch, err.duplicate());
            }
            return;
        }
    };
    let mut results: HashMap<(&str, i32), &PartitionProduceResponse> = HashMap::new();
    for topic in &response.responses {
        for partition in &topic.partition_responses {
            results.insert((topic.name.as_str(), partition.index), partition);
        }
    }
    for batch in batches {
        let Some(result) = results.get(&(&*batch.topic, batch.partition)).copied() else {
            retry_or_fail(
                shared,
                batch,
                Error::Kafka {
                    code: ErrorCode::UNKNOWN_SERVER_ERROR,
                    message: Some("the broker did not answer for this partition".into()),
                },
            );
            continue;
        };
        let code = ErrorCode(result.error_code);
        let error = || Error::Kafka {
            code,
            message: result.error_message.clone().or_else(|| {
                result
                    .record_errors
                    .first()
                    .and_then(|e| e.batch_index_error_message.clone())
            }),
        };
        match code {
            ErrorCode::NONE | ErrorCode::DUPLICATE_SEQUENCE_NUMBER => finish(
                shared,
                batch,
                Ok((result.base_offset, result.log_append_time_ms)),
            ),
            ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER => {
                // Expected while an earlier batch of the partition is being retried, or when
                // the batch was sequenced under a producer id since replaced: the broker did
                // not append it, so sending it again in order is safe.
                let explained = {
                    let state = shared.state.lock();
                    let retrying = state
                        .partitions
                        .get(&(batch.topic.clone(), batch.partition))
                        .is_some_and(|q| q.retrying);
                    let current = batch
                        .sequence
                        .is_some_and(|(id, _, _)| id == state.producer.id);
                    retrying || !current
                };
                if explained {
                    retry_or_fail(shared, batch, error());
                } else {
                    reset_producer_id(shared);
                    finish(shared, batch, Err(error()));
                }
            }
            ErrorCode::UNKNOWN_PRODUCER_ID | ErrorCode::INVALID_PRODUCER_EPOCH => {
                reset_producer_id(shared);
                finish(shared, batch, Err(error()));
            }
            _ if code.is_retriable() => {
                shared.client.invalidate_metadata_on(code);
                retry_or_fail(shared, batch, error());
            }
            _ => finish(shared, batch, Err(error())),
        }
    }
}

/// Sends the batch again after a backoff, unless its retries or delivery time are used up.
fn retry_or_fail(shared: &Shared, mut batch: Batch, err: Error) {
    let now = Instant::now();
    let config = &shared.config;
    let out_of_time = batch.created + config.delivery_timeout <= now;
    if !err.is_retriable() || batch.attempts >= config.retries || out_of_time {
        // A batch that may have been appended leaves a gap in the sequence if it is given up:
        // start over with a new producer id so later batches are not refused.
        if config.enable_idempotence && batch.sequence.is_some() {
            reset_producer_id(shared);
        }
        let err = if out_of_time {
            Error::Timeout(config.delivery_timeout)
        } else {
            err
        };
        finish(shared, batch, Err(err));
        return;
    }
    tracing::debug!(topic = %batch.topic, partition = batch.partition, %err, "retrying batch");
    if matches!(
        err,
        Error::Disconnected(_) | Error::Io { .. } | Error::Timeout(_)
    ) {
        shared.client.invalidate_metadata();
    }
    batch.attempts += 1;
    let pause = batch
        .backoff
        .get_or_insert_with(|| shared.client.retry_backoff())
        .next();
    batch.retry_at = Some(now + pause);
    {
        let mut state = shared.state.lock();
        let queue = state
            .partitions
            .entry((batch.topic.clone(), batch.partition))
            .or_default();
        queue.in_flight = queue.in_flight.saturating_sub(1);
        queue.retrying = true;
        // Back in sequence order, ahead of batches not yet sent.
        let position = match batch.sequence {
            Some((_, _, sequence)) => queue
                .ready
                .iter()
                .position(|b| b.sequence.is_none_or(|(_, _, s)| s > sequence))
                .unwrap_or(queue.ready.len()),
            None => 0,
        };
        queue.ready.insert(position, batch);
    }
    shared.wake.notify_one();
}

/// Completes a batch for good and updates its partition's in-flight count.
fn finish(shared: &Shared, batch: Batch, result: Result<(i64, i64)>) {
    {
        let mut state = shared.state.lock();
        if let Some(queue) = state
            .partitions
            .get_mut(&(batch.topic.clone(), batch.partition))
        {
            queue.in_flight = queue.in_flight.saturating_sub(1);
            if queue.retrying && queue.ready.iter().all(|b| b.attempts == 0) {
                queue.retrying = false;
            }
        }
    }
    shared.complete(batch, result);
    shared.wake.notify_one();
}

/// Asks the sender to obtain a new producer id before sending more; a transactional producer
/// bumps its epoch when the transaction is aborted instead (its batch's failure makes the
/// transaction abortable).
fn reset_producer_id(shared: &Shared) {
    if shared.config.enable_idempotence {
        let mut state = shared.state.lock();
        if let Some(txn) = state.txn.as_mut() {
            txn.bump_epoch = true;
            return;
        }
        if !state.needs_producer_id {
            tracing::info!("producer id reset after a sequence error");
            state.needs_producer_id = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(topic: &str, partition: i32, size: usize) -> Batch {
        let mut b = Batch::new(Arc::from(topic), partition);
        b.size = size;
        b
    }

    #[test]
    fn requests_hold_one_batch_per_partition_in_order() {
        let batches = vec![
            batch("t", 0, 10),
            batch("t", 1, 10),
            batch("t", 0, 10),
            batch("u", 0, 10),
            batch("t", 0, 10),
        ];
        let requests = split_requests(batches, 1000);
        let shape: Vec<Vec<(String, i32)>> = requests
            .iter()
            .map(|r| {
                r.iter()
                    .map(|b| (b.topic.to_string(), b.partition))
                    .collect()
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                vec![("t".into(), 0), ("t".into(), 1), ("u".into(), 0)],
                vec![("t".into(), 0)],
                vec![("t".into(), 0)],
            ]
        );
    }

    /// Guards the rare path where a batch already sent is sequenced again under a new producer
    /// id: its records come back out of the old encoding.
    #[test]
    fn a_restamped_batch_is_encoded_again_with_the_same_records() {
        let mut b = batch("t", 0, 100);
        b.records = vec![
            weir_records::Record::new(5, Some(b"k1"), Some(b"v1")),
            weir_records::Record::new(6, None, Some(b"v2")),
        ];
        b.sequence = Some((7, 0, 40));
        encode(weir_records::Compression::Zstd, false, &mut b).unwrap();
        assert!(b.records.is_empty());
        let first = b.encoded.clone().unwrap();
        // Encoding again with the same sequence keeps the bytes.
        encode(weir_records::Compression::Zstd, false, &mut b).unwrap();
        assert_eq!(b.encoded.as_ref(), Some(&first));

        b.sequence = Some((8, 1, 0));
        encode(weir_records::Compression::Zstd, false, &mut b).unwrap();
        let again = weir_records::RecordBatch::new(b.encoded.clone().unwrap()).unwrap();
        let header = again.header();
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (8, 1, 0)
        );
        let records: Vec<_> = again.records().unwrap().map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(records[1].value.as_deref(), Some(&b"v2"[..]));
        assert_eq!(records[1].timestamp, 6);
    }

    #[test]
    fn requests_respect_the_size_limit() {
        let batches = vec![batch("t", 0, 600), batch("t", 1, 600), batch("t", 2, 300)];
        let requests = split_requests(batches, 1000);
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].len(), 2);
        assert_eq!(requests[1].len(), 1);
    }
}
