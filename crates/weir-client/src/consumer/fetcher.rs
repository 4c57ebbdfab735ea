//! Fetching: one Fetch in flight per partition leader, completed fetches buffered until the
//! application reads them, and ListOffsets lookups for the reset policy.
//!
//! Fetches go out when the buffer runs dry (`Consumer::recv` finds no record): one to every
//! leader with fetchable partitions and no fetch in flight, each partition from the end of
//! what is buffered for it. The consumer reads the first response to arrive while the fetches
//! to other leaders continue, so with several leaders their round trips overlap the
//! application's processing; a partition with two responses buffered is not fetched again
//! until one is used up, which bounds the buffer to two responses' worth (`fetch.max.bytes`)
//! per broker. With a single leader the next fetch starts only once its response is used up:
//! sending it earlier, while records were still buffered, was measured no faster in the
//! client benchmark (docs/benchmarks.md), whose two cores the broker and client already keep
//! busy.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use weir_protocol::ErrorCode;
use weir_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use weir_protocol::messages::fetch_response::AbortedTransaction;
use weir_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use weir_protocol::messages::{FetchRequest, FetchResponse, ListOffsetsRequest};
use weir_records::{ControlRecord, ControlRecordType, RecordBatch, RecordBatches, Records};

use super::ConsumerConfig;
use super::config::IsolationLevel;
use super::group::millis_i32;
use super::positions::Positions;
use super::protocol::TopicPartition;
use super::record::ConsumerRecord;
use crate::{Client, Error, Result};

/// A fetch that came back from one broker.
struct Outcome {
    broker: i32,
    requested: Vec<(TopicPartition, i64)>,
    response: Result<FetchResponse>,
}

/// Records fetched for one partition from `next`, read lazily batch by batch.
struct Completed {
    tp: TopicPartition,
    topic: Arc<str>,
    /// The offset the consumer must stand at for this data to still apply.
    next: i64,
    batches: RecordBatches,
    current: Option<Records>,
    /// The offset after the current batch: the position once it is used up (its last
    /// records may have been compacted away).
    current_end: i64,
    /// The offset this response was fetched from.
    start: i64,
    /// The offset after the last complete batch: the position once all of it is used up, and
    /// where the partition's next fetch starts.
    end: i64,
    /// read_committed: the response's aborted transactions not yet reached, by first offset.
    aborted: VecDeque<AbortedTransaction>,
    /// read_committed: producers whose transaction reached here was aborted (until their
    /// ABORT marker): their transactional batches are skipped.
    aborted_producers: HashSet<i64>,
}

/// Responses buffered per partition before it is fetched no further.
const MAX_BUFFERED: usize = 2;

pub(crate) struct Fetcher {
    client: Client,
    max_wait: Duration,
    min_bytes: i32,
    max_bytes: i32,
    partition_max_bytes: i32,
    check_crcs: bool,
    isolation_level: IsolationLevel,
    in_flight: HashMap<i32, HashSet<TopicPartition>>,
    outcomes_tx: mpsc::UnboundedSender<Outcome>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    ready: VecDeque<Completed>,
    /// Partitions that just failed, not fetched again before the instant.
    backoff: HashMap<TopicPartition, Instant>,
    retry_backoff: Duration,
    topics: HashMap<String, Arc<str>>,
}

impl Fetcher {
    pub(crate) fn new(client: Client, config: &ConsumerConfig) -> Self {
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        Self {
            max_wait: config.fetch_max_wait,
            min_bytes: config.fetch_min_bytes,
            max_bytes: config.fetch_max_bytes,
            partition_max_bytes: config.max_partition_fetch_bytes,
            check_crcs: config.check_crcs,
            isolation_level: config.isolation_level,
            retry_backoff: client.config().retry_backoff,
            client,
            in_flight: HashMap::new(),
            outcomes_tx,
            outcomes,
            ready: VecDeque::new(),
            backoff: HashMap::new(),
            topics: HashMap::new(),
        }
    }

    /// Drops buffered data of partitions no longer assigned (or whose position moved).
    pub(crate) fn retain(&mut self, positions: &Positions) {
        // A partition's first buffered response must start at its position, each later one
        // where the one before it ends.
        let mut expected: HashMap<TopicPartition, Option<i64>> = HashMap::new();
        self.ready.retain(|c| {
            let want = expected
                .entry(c.tp.clone())
                .or_insert_with(|| positions.position(&c.tp));
            if *want == Some(c.next) {
                *want = Some(c.end);
                true
            } else {
                *want = None;
                false
            }
        });
    }

    /// Where the next fetch of `tp` starts given its position: there, or after what is
    /// buffered for it; `None` while enough is buffered.
    fn fetch_offset(&self, tp: &TopicPartition, position: i64) -> Option<i64> {
        let mut count = 0;
        let mut end = position;
        for c in self.ready.iter().filter(|c| c.tp == *tp) {
            count += 1;
            // A response with no complete batch gives no offset to continue from.
            if c.end <= c.start {
                return None;
            }
            end = c.end;
        }
        (count < MAX_BUFFERED).then_some(end)
    }

    /// Where the data buffered for `tp` ends: its position when nothing is buffered.
    fn buffered_end(&self, tp: &TopicPartition, position: i64) -> i64 {
        self.ready
            .iter()
            .rfind(|c| c.tp == *tp)
            .map_or(position, |c| c.end)
    }

    /// The next buffered record, advancing the position past it. Data that no longer
    /// matches the position (after a seek or a reassignment) is dropped.
    pub(crate) fn next_record(
        &mut self,
        positions: &mut Positions,
    ) -> Option<Result<ConsumerRecord>> {
        while let Some(completed) = self.ready.front_mut() {
            if positions.position(&completed.tp) != Some(completed.next) {
                self.ready.pop_front();
                continue;
            }
            let before = completed.next;
            let result = completed.next_record(self.check_crcs);
            if let Ok(Some(record)) = &result {
                completed.next = record.offset + 1;
            }
            // Control batches and compacted gaps move the position too.
            if completed.next != before {
                positions.advance(&completed.tp, before, completed.next);
            }
            match result {
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) => {
                    self.ready.pop_front();
                }
                Err(err) => {
                    self.ready.pop_front();
                    return Some(Err(err));
                }
            }
        }
        None
    }

    /// Sends a Fetch to every leader with fetchable partitions and none in flight.
    pub(crate) async fn send_fetches(&mut self, positions: &Positions) -> Result<()> {
        let now = Instant::now();
        self.backoff.retain(|_, until| *until > now);
        let in_flight: HashSet<&TopicPartition> = self.in_flight.values().flatten().collect();
        let mut by_broker: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        for (tp, position) in positions.fetchable() {
            if in_flight.contains(&tp) || self.backoff.contains_key(&tp) {
                continue;
            }
            let Some(offset) = self.fetch_offset(&tp, position) else {
                continue;
            };
            let leader = match self.client.leader_for(&tp.topic, tp.partition).await {
                Ok(leader) => leader,
                Err(err) if err.is_retriable() => {
                    self.backoff.insert(tp, now + self.retry_backoff);
                    continue;
                }
                Err(err) => return Err(err),
            };
            if self.in_flight.contains_key(&leader) {
                continue;
            }
            by_broker.entry(leader).or_default().push((tp, offset));
        }
        for (broker, requested) in by_broker {
            self.in_flight
                .insert(broker, requested.iter().map(|(tp, _)| tp.clone()).collect());
            let request = self.fetch_request(&requested);
            let client = self.client.clone();
            let tx = self.outcomes_tx.clone();
            tokio::spawn(async move {
                let response = client.send_to(broker, request).await.map(|(r, _)| r);
                let _ = tx.send(Outcome {
                    broker,
                    requested,
                    response,
                });
            });
        }
        Ok(())
    }

    fn fetch_request(&self, requested: &[(TopicPartition, i64)]) -> FetchRequest {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (tp, offset) in requested {
            let partition = FetchPartition {
                partition: tp.partition,
                current_leader_epoch: -1,
                fetch_offset: *offset,
                last_fetched_epoch: -1,
                log_start_offset: -1,
                partition_max_bytes: self.partition_max_bytes,
                ..Default::default()
            };
            match topics.last_mut() {
                Some(topic) if topic.topic == tp.topic => topic.partitions.push(partition),
                _ => topics.push(FetchTopic {
                    topic: tp.topic.clone(),
                    partitions: vec![partition],
                    ..Default::default()
                }),
            }
        }
        FetchRequest {
            replica_id: -1,
            max_wait_ms: millis_i32(self.max_wait),
            min_bytes: self.min_bytes,
            max_bytes: self.max_bytes,
            isolation_level: self.isolation_level.wire_value(),
            session_id: 0,
            // -1: a full fetch outside any incremental fetch session.
            session_epoch: -1,
            topics,
            ..Default::default()
        }
    }

    pub(crate) fn has_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// The earliest instant a backed-off partition may be fetched again.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.backoff.values().min().copied()
    }

    /// Waits for one fetch to complete and buffers its data.
    pub(crate) async fn receive(&mut self, positions: &mut Positions) -> Result<()> {
        let Some(outcome) = self.outcomes.recv().await else {
            return Ok(());
        };
        self.complete(outcome, positions)
    }

    fn complete(&mut self, outcome: Outcome, positions: &mut Positions) -> Result<()> {
        self.in_flight.remove(&outcome.broker);
        let requested: HashMap<TopicPartition, i64> = outcome.requested.into_iter().collect();
        let response = match outcome.response {
            Ok(response) => response,
            Err(err) if err.is_retriable() => {
                tracing::debug!(broker = outcome.broker, %err, "fetch failed");
                self.client.invalidate_metadata();
                let until = Instant::now() + self.retry_backoff;
                for tp in requested.into_keys() {
                    self.backoff.insert(tp, until);
                }
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        let top = ErrorCode(response.error_code);
        if top.is_error() {
            return Err(Error::kafka(top));
        }
        let mut fatal = None;
        for topic in response.responses {
            for data in topic.partitions {
                let tp = TopicPartition::new(topic.topic.clone(), data.partition_index);
                let Some(&fetched_from) = requested.get(&tp) else {
                    continue;
                };
                let code = ErrorCode(data.error_code);
                match code {
                    ErrorCode::NONE => {
                        // The high watermark counts for the lag only if the response
                        // continues the partition's data (not one sent before a seek).
                        if positions.position(&tp).is_some_and(|position| {
                            self.buffered_end(&tp, position) == fetched_from
                        }) {
                            // read_committed reads no further than the last stable offset, so
                            // that is where its lag is measured to, as in the Java client.
                            let end = match self.isolation_level {
                                IsolationLevel::ReadCommitted if data.last_stable_offset >= 0 => {
                                    data.last_stable_offset
                                }
                                _ => data.high_watermark,
                            };
                            positions.set_high_watermark(&tp, end);
                        }
                        let records = data.records.unwrap_or_default();
                        // A read_uncommitted fetch gets no aborted transactions; a broker
                        // sending some anyway must not hide records.
                        let aborted = match self.isolation_level {
                            IsolationLevel::ReadCommitted => {
                                data.aborted_transactions.unwrap_or_default()
                            }
                            IsolationLevel::ReadUncommitted => Vec::new(),
                        };
                        if !records.is_empty() {
                            self.buffer(tp, fetched_from, records, aborted);
                        }
                    }
                    ErrorCode::OFFSET_OUT_OF_RANGE => positions.out_of_range(&tp, fetched_from),
                    code if self.client.invalidate_metadata_on(code) || code.is_retriable() => {
                        self.backoff.insert(tp, Instant::now() + self.retry_backoff);
                    }
                    code => {
                        fatal.get_or_insert(Error::Kafka {
                            code,
                            message: Some(format!("fetching {tp}")),
                        });
                    }
                }
            }
        }
        fatal.map_or(Ok(()), Err)
    }

    fn buffer(
        &mut self,
        tp: TopicPartition,
        fetched_from: i64,
        records: Bytes,
        mut aborted: Vec<AbortedTransaction>,
    ) {
        let topic = match self.topics.get(&tp.topic) {
            Some(topic) => topic.clone(),
            None => {
                let topic: Arc<str> = Arc::from(tp.topic.as_str());
                self.topics.insert(tp.topic.clone(), topic.clone());
                topic
            }
        };
        let end = RecordBatches::new(records.clone())
            .map_while(|batch| batch.ok().map(|b| b.next_offset()))
            .fold(fetched_from, i64::max);
        self.ready.push_back(Completed {
            tp,
            topic,
            next: fetched_from,
            batches: RecordBatches::new(records),
            current: None,
            current_end: fetched_from,
            start: fetched_from,
            end,
            aborted: {
                aborted.sort_by_key(|a| a.first_offset);
                aborted.into()
            },
            aborted_producers: HashSet::new(),
        });
    }

    /// The offsets ListOffsets gives for `lookups` (partition, timestamp), by partition.
    pub(crate) async fn list_offsets(
        &self,
        lookups: &[(TopicPartition, i64)],
    ) -> Result<Vec<(TopicPartition, i64)>> {
        let mut by_broker: BTreeMap<i32, BTreeMap<&str, Vec<ListOffsetsPartition>>> =
            BTreeMap::new();
        for (tp, timestamp) in lookups {
            let leader = self.client.leader_for(&tp.topic, tp.partition).await?;
            by_broker
                .entry(leader)
                .or_default()
                .entry(&tp.topic)
                .or_default()
                .push(ListOffsetsPartition {
                    partition_index: tp.partition,
                    current_leader_epoch: -1,
                    timestamp: *timestamp,
                    ..Default::default()
                });
        }
        let mut found = Vec::new();
        for (broker, topics) in by_broker {
            let request = ListOffsetsRequest {
                replica_id: -1,
                isolation_level: self.isolation_level.wire_value(),
                topics: topics
                    .into_iter()
                    .map(|(name, partitions)| ListOffsetsTopic {
                        name: name.to_string(),
                        partitions,
                        ..Default::default()
                    })
                    .collect(),
                timeout_ms: millis_i32(self.client.config().request_timeout),
                ..Default::default()
            };
            let (response, _) = self.client.send_to(broker, request).await?;
            for topic in response.topics {
                for p in topic.partitions {
                    let code = ErrorCode(p.error_code);
                    if code.is_error() {
                        self.client.invalidate_metadata_on(code);
                        if !code.is_retriable() {
                            return Err(Error::Kafka {
                                code,
                                message: Some(format!(
                                    "listing offsets of {}-{}",
                                    topic.name, p.partition_index
                                )),
                            });
                        }
                        continue;
                    }
                    found.push((
                        TopicPartition::new(topic.name.clone(), p.partition_index),
                        p.offset,
                    ));
                }
            }
        }
        Ok(found)
    }
}

impl Completed {
    fn next_record(&mut self, check_crcs: bool) -> Result<Option<ConsumerRecord>> {
        loop {
            if let Some(records) = &mut self.current {
                match records.next() {
                    Some(Ok(record)) => {
                        // A compressed batch is fetched whole, from its base offset.
                        if record.offset < self.next {
                            continue;
                        }
                        return Ok(Some(ConsumerRecord {
                            topic: self.topic.clone(),
                            partition: self.tp.partition,
                            offset: record.offset,
                            timestamp: record.timestamp,
                            key: record.key,
                            value: record.value,
                            headers: record.headers,
                        }));
                    }
                    Some(Err(err)) => return Err(corrupt(&self.tp, err)),
                    None => {
                        self.current = None;
                        if self.current_end > self.next {
                            self.next = self.current_end;
                        }
                    }
                }
            }
            let batch: RecordBatch = match self.batches.next() {
                None => return Ok(None),
                // A response may end with a partial batch (the broker cuts at the byte limit).
                Some(Err(weir_records::Error::Truncated { .. })) => return Ok(None),
                Some(Err(err)) => return Err(corrupt(&self.tp, err)),
                Some(Ok(batch)) => batch,
            };
            // Before the position check: a transaction aborted later may have started in a
            // batch the position is already past.
            if self.is_aborted(&batch)? {
                self.current_end = batch.next_offset();
                self.next = self.next.max(self.current_end);
                continue;
            }
            if batch.next_offset() <= self.next {
                continue;
            }
            if batch.attributes().is_control() {
                self.current_end = batch.next_offset();
                self.next = self.current_end;
                continue;
            }
            if check_crcs {
                batch.verify_crc().map_err(|e| corrupt(&self.tp, e))?;
            }
            self.current_end = batch.next_offset();
            self.current = Some(batch.records().map_err(|e| corrupt(&self.tp, e))?);
        }
    }
}

impl Completed {
    /// Whether `batch` belongs to an aborted transaction (read_committed only): the response's
    /// aborted transactions that start at or before the batch's last offset mark their
    /// producers aborted, and a producer's ABORT marker ends that. Control batches are never
    /// "aborted" themselves; they are skipped as control batches.
    fn is_aborted(&mut self, batch: &RecordBatch) -> Result<bool> {
        let header = batch.header();
        if header.producer_id < 0 {
            return Ok(false);
        }
        while let Some(first) = self.aborted.front() {
            if first.first_offset > batch.last_offset() {
                break;
            }
            self.aborted_producers.insert(first.producer_id);
            self.aborted.pop_front();
        }
        let attributes = batch.attributes();
        if attributes.is_control() {
            if is_abort_marker(batch).map_err(|e| corrupt(&self.tp, e))? {
                self.aborted_producers.remove(&header.producer_id);
            }
            return Ok(false);
        }
        Ok(attributes.is_transactional() && self.aborted_producers.contains(&header.producer_id))
    }
}

/// Whether a control batch holds an ABORT marker.
fn is_abort_marker(batch: &RecordBatch) -> weir_records::Result<bool> {
    let Some(record) = batch.records()?.next().transpose()? else {
        return Ok(false);
    };
    Ok(ControlRecord::from_record(&record)?.record_type == ControlRecordType::Abort)
}

fn corrupt(tp: &TopicPartition, err: weir_records::Error) -> Error {
    Error::Kafka {
        code: ErrorCode::CORRUPT_MESSAGE,
        message: Some(format!("{tp}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use weir_records::{Compression, EndTransactionMarker, Record, RecordBatchBuilder};

    fn batch(base: i64, values: &[&str], compression: Compression) -> Bytes {
        let mut builder = RecordBatchBuilder::new();
        builder.base_offset(base).compression(compression);
        for v in values {
            builder.push(Record::new(0, None, Some(v.as_bytes())));
        }
        builder.build().unwrap()
    }

    fn completed(bytes: Bytes, next: i64) -> Completed {
        Completed {
            tp: TopicPartition::new("t", 0),
            topic: Arc::from("t"),
            next,
            batches: RecordBatches::new(bytes),
            current: None,
            current_end: next,
            start: next,
            end: next,
            aborted: VecDeque::new(),
            aborted_producers: HashSet::new(),
        }
    }

    /// Drains like `Fetcher::next_record` does: the offsets handed out, and where it ends.
    fn drain(c: &mut Completed) -> (Vec<i64>, i64) {
        let mut offsets = Vec::new();
        while let Some(record) = c.next_record(true).unwrap() {
            c.next = record.offset + 1;
            offsets.push(record.offset);
        }
        (offsets, c.next)
    }

    #[test]
    fn skips_records_before_the_position_and_control_batches() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&batch(0, &["a", "b", "c", "d"], Compression::Gzip));
        let marker = EndTransactionMarker::commit(0)
            .batch_builder(7, 0, 0)
            .base_offset(4)
            .build()
            .unwrap();
        buf.extend_from_slice(&marker);
        buf.extend_from_slice(&batch(5, &["e"], Compression::None));
        // A response cut inside the next batch.
        let cut = batch(6, &["f", "g"], Compression::None);
        buf.extend_from_slice(&cut[..cut.len() - 3]);
        let mut c = completed(buf.freeze(), 2);
        let (offsets, next) = drain(&mut c);
        assert_eq!(offsets, [2, 3, 5]);
        assert_eq!(next, 6);
    }

    #[test]
    fn a_trailing_control_batch_moves_the_position_past_it() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&batch(0, &["a"], Compression::None));
        let marker = EndTransactionMarker::abort(0)
            .batch_builder(7, 0, 0)
            .base_offset(1)
            .build()
            .unwrap();
        buf.extend_from_slice(&marker);
        let mut c = completed(buf.freeze(), 0);
        assert_eq!(drain(&mut c), (vec![0], 2));
    }

    fn txn_batch(base: i64, producer: i64, values: &[&str]) -> Bytes {
        let mut builder = RecordBatchBuilder::new();
        builder
            .base_offset(base)
            .producer(producer, 0, 0)
            .transactional(true);
        for v in values {
            builder.push(Record::new(0, None, Some(v.as_bytes())));
        }
        builder.build().unwrap()
    }

    fn marker(base: i64, producer: i64, commit: bool) -> Bytes {
        let marker = if commit {
            EndTransactionMarker::commit(0)
        } else {
            EndTransactionMarker::abort(0)
        };
        marker
            .batch_builder(producer, 0, 0)
            .base_offset(base)
            .build()
            .unwrap()
    }

    /// Two producers interleaved on one partition: 7 aborts its first transaction and
    /// commits its second, 8 commits; a non-transactional batch of producer 9 in between.
    fn interleaved() -> Bytes {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&txn_batch(0, 7, &["a7", "b7"]));
        buf.extend_from_slice(&txn_batch(2, 8, &["a8"]));
        buf.extend_from_slice(&batch(3, &["plain"], Compression::None));
        buf.extend_from_slice(&txn_batch(4, 7, &["c7"]));
        buf.extend_from_slice(&marker(5, 7, false));
        buf.extend_from_slice(&txn_batch(6, 8, &["b8"]));
        buf.extend_from_slice(&marker(7, 8, true));
        buf.extend_from_slice(&txn_batch(8, 7, &["d7"]));
        buf.extend_from_slice(&marker(9, 7, true));
        buf.freeze()
    }

    fn aborted(producer_id: i64, first_offset: i64) -> AbortedTransaction {
        AbortedTransaction {
            producer_id,
            first_offset,
            ..Default::default()
        }
    }

    #[test]
    fn read_committed_skips_aborted_transactions_and_their_markers() {
        let mut c = completed(interleaved(), 0);
        c.aborted = vec![aborted(7, 0)].into();
        let (offsets, next) = drain(&mut c);
        assert_eq!(offsets, [2, 3, 6, 8]);
        assert_eq!(next, 10);
    }

    #[test]
    fn without_aborted_transactions_every_data_record_is_read() {
        let mut c = completed(interleaved(), 0);
        let (offsets, next) = drain(&mut c);
        assert_eq!(offsets, [0, 1, 2, 3, 4, 6, 8]);
        assert_eq!(next, 10);
    }

    /// The position may be inside an aborted transaction that started before it (the
    /// broker lists it by its first offset, below the fetch offset).
    #[test]
    fn an_aborted_transaction_that_started_before_the_position_is_skipped() {
        let mut c = completed(interleaved(), 1);
        c.aborted = vec![aborted(7, 0)].into();
        assert_eq!(drain(&mut c), (vec![2, 3, 6, 8], 10));
        let mut c = completed(interleaved(), 4);
        c.aborted = vec![aborted(7, 0)].into();
        assert_eq!(drain(&mut c), (vec![6, 8], 10));
    }

    /// A response that is nothing but an aborted transaction and its marker still moves the
    /// position to its end, so the consumer does not fetch it again for ever.
    #[test]
    fn a_response_of_only_aborted_data_moves_the_position() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&txn_batch(10, 7, &["x", "y"]));
        buf.extend_from_slice(&marker(12, 7, false));
        let mut c = completed(buf.freeze(), 10);
        c.aborted = vec![aborted(7, 10), aborted(3, 50)].into();
        assert_eq!(drain(&mut c), (vec![], 13));
    }

    #[test]
    fn a_corrupt_batch_is_an_error() {
        let mut bytes = BytesMut::from(&batch(0, &["a", "b"], Compression::None)[..]);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let mut c = completed(bytes.freeze(), 0);
        let err = c.next_record(true).unwrap_err();
        assert!(err.to_string().contains("t-0"), "{err}");
    }
}
