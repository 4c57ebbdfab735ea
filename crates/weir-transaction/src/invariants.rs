//! Random operation sequences against the coordinator — producers (current and stale) calling
//! every API, appends acknowledged in any order or failed, markers delivered partially, time
//! passing (timeouts, expirations), partitions reloaded (with in-flight appends lost or landed)
//! — checking named invariants after every step, then driving the system to quiescence.
//!
//! The run counts what it exercised and fails if a scenario was never reached, so it cannot
//! pass vacuously.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};

use crate::record::{TransactionLogValue, decode_key};
use crate::*;

const IDS: [&str; 3] = ["alpha", "beta", "gamma"];
const TOPICS: [&str; 2] = ["t", "u"];

fn config() -> Config {
    Config {
        state_log_partitions: 2,
        offsets_topic_partitions: 3,
        max_transaction_timeout_ms: 5_000,
        transactional_id_expiration_ms: 20_000,
        retry_backoff_ms: 50,
        ..Config::default()
    }
}

/// Which producer identity a request carries.
#[derive(Debug, Clone, Copy)]
enum Who {
    /// The latest identity handed out for the id.
    Latest,
    /// One handed out earlier (a zombie), or the latest if there is no other.
    Stale(usize),
}

#[derive(Debug, Clone)]
enum Op {
    Init {
        id: usize,
        timeout_ms: i32,
        /// KIP-360: name an identity (`Some`), or start afresh.
        expected: Option<Who>,
    },
    Add {
        id: usize,
        who: Who,
        partitions: Vec<(usize, i32)>,
        v2: bool,
    },
    AddOffsets {
        id: usize,
        who: Who,
        group: u8,
    },
    Verify {
        id: usize,
        who: Who,
        partitions: Vec<(usize, i32)>,
    },
    End {
        id: usize,
        who: Who,
        commit: bool,
        v2: bool,
    },
    /// Acknowledge one in-flight append: `None` = success, else a failure.
    Ack {
        pick: usize,
        failure: Option<PersistError>,
    },
    /// Report markers of one batch: all of its partitions, or only the first.
    Markers {
        pick: usize,
        all: bool,
    },
    Advance {
        ms: i64,
    },
    /// The broker loses and regains a `__transaction_state` partition; its in-flight appends
    /// are lost, or land in the log without their acknowledgement.
    Reload {
        partition: i32,
        land_in_flight: bool,
    },
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![3 => Just(Who::Latest), 1 => (0..8usize).prop_map(Who::Stale)]
}

fn partitions() -> impl Strategy<Value = Vec<(usize, i32)>> {
    proptest::collection::vec((0..TOPICS.len(), 0..3i32), 0..3)
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..IDS.len();
    prop_oneof![
        3 => (id.clone(), prop_oneof![Just(100), Just(1_000), Just(5_000), Just(6_000)],
            proptest::option::of(who()))
            .prop_map(|(id, timeout_ms, expected)| Op::Init { id, timeout_ms, expected }),
        5 => (id.clone(), who(), partitions(), any::<bool>())
            .prop_map(|(id, who, partitions, v2)| Op::Add { id, who, partitions, v2 }),
        1 => (id.clone(), who(), 0..4u8)
            .prop_map(|(id, who, group)| Op::AddOffsets { id, who, group }),
        1 => (id.clone(), who(), partitions())
            .prop_map(|(id, who, partitions)| Op::Verify { id, who, partitions }),
        4 => (id.clone(), who(), any::<bool>(), any::<bool>())
            .prop_map(|(id, who, commit, v2)| Op::End { id, who, commit, v2 }),
        8 => (0..4usize, prop_oneof![
                6 => Just(None),
                1 => Just(Some(PersistError::NotLeader)),
                1 => Just(Some(PersistError::Unavailable)),
                1 => Just(Some(PersistError::Other)),
            ])
            .prop_map(|(pick, failure)| Op::Ack { pick, failure }),
        4 => (0..3usize, any::<bool>()).prop_map(|(pick, all)| Op::Markers { pick, all }),
        2 => prop_oneof![3 => 0..2_000i64, 1 => Just(25_000i64)].prop_map(|ms| Op::Advance { ms }),
        1 => (0..2i32, any::<bool>())
            .prop_map(|(partition, land_in_flight)| Op::Reload { partition, land_in_flight }),
    ]
}

/// What the run reached, summed over every case.
#[derive(Debug, Default)]
struct Coverage {
    steps: u64,
    handed_out: u64,
    commits_completed: u64,
    aborts_completed: u64,
    fenced_by_init: u64,
    timeout_aborts: u64,
    expirations: u64,
    persist_failures: u64,
    reloads_resuming_markers: u64,
    landed_on_reload: u64,
    v2_epoch_bumps: u64,
    stale_requests_refused: u64,
    verify_abortable: u64,
    partial_markers: u64,
    concurrent_refusals: u64,
}

/// What a request was, to judge its response.
#[derive(Debug, Clone)]
struct Sent {
    id: usize,
    kind: Kind,
    producer: ProducerIdAndEpoch,
    /// Older than the latest identity handed out for its producer id when sent.
    stale: bool,
    partitions: BTreeSet<TopicPartition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Init,
    Add,
    /// EndTxn, and whether it is transaction version 2.
    End(TransactionResult, bool),
}

/// A decided transaction: a persisted PrepareCommit/PrepareAbort. With transaction versions 0
/// and 1 consecutive transactions share a producer epoch, so a decision is identified by its
/// position in `World::decided`, not by producer id and epoch.
#[derive(Debug, Clone)]
struct Decided {
    id: usize,
    producer: ProducerIdAndEpoch,
    result: TransactionResult,
    partitions: BTreeSet<TopicPartition>,
}

struct World {
    c: Coordinator,
    now: Millis,
    ids: ProducerIdBlock,
    next_request: u64,
    /// Each `__transaction_state` partition's records, in append order.
    log: BTreeMap<i32, Vec<(Bytes, Option<Bytes>)>>,
    epochs: BTreeMap<i32, i32>,
    in_flight: Vec<(PersistToken, i32, PersistRecord)>,
    /// Markers handed to the broker, with the decision they carry out.
    marker_batches: Vec<(usize, TxnMarkers)>,
    sent: BTreeMap<RequestId, Sent>,
    /// Identities handed out per transactional id, oldest first.
    handed: BTreeMap<usize, Vec<ProducerIdAndEpoch>>,
    /// The highest epoch handed out per producer id.
    latest: BTreeMap<i64, i16>,
    /// Every decision, in the order its record landed.
    decided: Vec<Decided>,
    /// The latest decision of each transactional id.
    latest_decision: BTreeMap<usize, usize>,
    /// Markers written, by (decision, partition).
    marked: BTreeMap<(usize, TopicPartition), TransactionResult>,
    /// Partitions acknowledged to the client since its transactional id's last decision.
    acked: BTreeMap<usize, BTreeSet<TopicPartition>>,
    /// Whether the outputs being absorbed come from `tick`.
    in_tick: bool,
}

type Check = Result<(), TestCaseError>;

fn violated(invariant: &str, detail: String) -> TestCaseError {
    TestCaseError::fail(format!("{invariant}: {detail}"))
}

impl World {
    fn new() -> Self {
        let mut c = Coordinator::new(config());
        let mut epochs = BTreeMap::new();
        for p in 0..2 {
            c.load(0, p, 1, Vec::<(Bytes, Option<Bytes>)>::new())
                .unwrap_or_default();
            epochs.insert(p, 1);
        }
        Self {
            c,
            now: 1_000_000,
            ids: ProducerIdBlock::new(1, 1_000_000),
            next_request: 0,
            log: BTreeMap::new(),
            epochs,
            in_flight: Vec::new(),
            marker_batches: Vec::new(),
            sent: BTreeMap::new(),
            handed: BTreeMap::new(),
            latest: BTreeMap::new(),
            decided: Vec::new(),
            latest_decision: BTreeMap::new(),
            marked: BTreeMap::new(),
            acked: BTreeMap::new(),
            in_tick: false,
        }
    }

    fn identity(&self, id: usize, who: Who) -> ProducerIdAndEpoch {
        let handed = self.handed.get(&id).map(Vec::as_slice).unwrap_or_default();
        let pick = match who {
            Who::Latest => handed.last(),
            Who::Stale(i) => handed
                .len()
                .checked_sub(1)
                .filter(|n| *n > 0)
                .and_then(|n| handed.get(i % n))
                .or(handed.last()),
        };
        pick.copied().unwrap_or(ProducerIdAndEpoch::new(99_999, 0))
    }

    fn is_stale(&self, p: ProducerIdAndEpoch) -> bool {
        self.latest
            .get(&p.producer_id)
            .is_some_and(|l| p.epoch < *l)
    }

    fn send(&mut self, id: usize, kind: Kind, producer: ProducerIdAndEpoch) -> RequestId {
        self.send_with(id, kind, producer, BTreeSet::new())
    }

    fn send_with(
        &mut self,
        id: usize,
        kind: Kind,
        producer: ProducerIdAndEpoch,
        partitions: BTreeSet<TopicPartition>,
    ) -> RequestId {
        self.next_request += 1;
        let r = RequestId(self.next_request);
        let stale = kind != Kind::Init && self.is_stale(producer);
        self.sent.insert(
            r,
            Sent {
                id,
                kind,
                producer,
                stale,
                partitions,
            },
        );
        r
    }

    fn apply(&mut self, op: &Op, cov: &mut Coverage) -> Check {
        match op.clone() {
            Op::Init {
                id,
                timeout_ms,
                expected,
            } => {
                let producer = expected.map(|w| self.identity(id, w));
                let r = self.send(id, Kind::Init, producer.unwrap_or_default());
                let req = InitProducerIdRequest {
                    transactional_id: Some(IDS[id].into()),
                    transaction_timeout_ms: timeout_ms,
                    producer,
                };
                self.c.init_producer_id(self.now, r, &req, &mut self.ids);
                self.absorb(cov, Some(r))
            }
            Op::Add {
                id,
                who,
                partitions,
                v2,
            } => {
                let producer = self.identity(id, who);
                let parts: BTreeSet<TopicPartition> = partitions
                    .iter()
                    .map(|(t, p)| TopicPartition::new(TOPICS[*t], *p))
                    .collect();
                let r = self.send_with(id, Kind::Add, producer, parts.clone());
                let req = AddPartitionsRequest {
                    transactional_id: IDS[id].into(),
                    producer,
                    partitions: parts.into_iter().collect(),
                    transaction_version: if v2 {
                        TransactionVersion::V2
                    } else {
                        TransactionVersion::V0
                    },
                };
                self.c.add_partitions_to_txn(self.now, r, &req);
                self.absorb(cov, Some(r))
            }
            Op::AddOffsets { id, who, group } => {
                let producer = self.identity(id, who);
                let group = format!("group-{group}");
                let tp = TopicPartition::new(
                    CONSUMER_OFFSETS_TOPIC,
                    partition_for(&group, config().offsets_topic_partitions),
                );
                let r = self.send_with(id, Kind::Add, producer, BTreeSet::from([tp]));
                let req = AddOffsetsRequest {
                    transactional_id: IDS[id].into(),
                    producer,
                    group_id: group,
                    transaction_version: TransactionVersion::V0,
                };
                self.c.add_offsets_to_txn(self.now, r, &req);
                self.absorb(cov, Some(r))
            }
            Op::Verify {
                id,
                who,
                partitions,
            } => {
                let producer = self.identity(id, who);
                let req = AddPartitionsRequest {
                    transactional_id: IDS[id].into(),
                    producer,
                    partitions: partitions
                        .iter()
                        .map(|(t, p)| TopicPartition::new(TOPICS[*t], *p))
                        .collect(),
                    transaction_version: TransactionVersion::V0,
                };
                let result = self.c.verify_partitions_in_txn(&req);
                if self.is_stale(producer) {
                    let admitted = result
                        .as_ref()
                        .is_ok_and(|rs| rs.iter().any(|(_, r)| r.is_ok()));
                    if admitted {
                        return Err(violated(
                            "fenced_epoch_never_writes_again",
                            format!("verify admitted a write of stale {producer:?}"),
                        ));
                    }
                    cov.stale_requests_refused += 1;
                }
                if let Ok(rs) = &result {
                    if rs
                        .iter()
                        .any(|(_, r)| r == &Err(Error::TransactionAbortable))
                    {
                        cov.verify_abortable += 1;
                    }
                }
                Ok(())
            }
            Op::End {
                id,
                who,
                commit,
                v2,
            } => {
                let producer = self.identity(id, who);
                let result = if commit {
                    TransactionResult::Commit
                } else {
                    TransactionResult::Abort
                };
                let r = self.send(id, Kind::End(result, v2), producer);
                let req = EndTxnRequest {
                    transactional_id: IDS[id].into(),
                    producer,
                    result,
                    transaction_version: if v2 {
                        TransactionVersion::V2
                    } else {
                        TransactionVersion::V0
                    },
                };
                self.c.end_txn(self.now, r, &req, &mut self.ids);
                self.absorb(cov, Some(r))
            }
            Op::Ack { pick, failure } => {
                if self.in_flight.is_empty() {
                    return Ok(());
                }
                let (token, partition, record) = self.in_flight.remove(pick % self.in_flight.len());
                match failure {
                    None => self.append(partition, record, cov)?,
                    Some(_) => cov.persist_failures += 1,
                }
                self.c
                    .persisted(self.now, token, failure.map_or(Ok(()), Err));
                self.absorb(cov, None)
            }
            Op::Markers { pick, all } => {
                if self.marker_batches.is_empty() {
                    return Ok(());
                }
                let i = pick % self.marker_batches.len();
                let (decision, mut batch) = self.marker_batches.remove(i);
                let written: Vec<TopicPartition> = if all || batch.partitions.len() <= 1 {
                    mem_take(&mut batch.partitions)
                } else {
                    cov.partial_markers += 1;
                    vec![batch.partitions.remove(0)]
                };
                for tp in &written {
                    let previous = self.marked.insert((decision, tp.clone()), batch.result);
                    if previous.is_some_and(|r| r != batch.result) {
                        return Err(violated(
                            "every_partition_gets_its_marker",
                            format!("{tp:?} marked both ways for one transaction"),
                        ));
                    }
                }
                self.c
                    .markers_written(self.now, &batch.transactional_id, batch.token, &written);
                if !batch.partitions.is_empty() {
                    self.marker_batches.insert(i, (decision, batch));
                }
                self.absorb(cov, None)
            }
            Op::Advance { ms } => {
                let target = self.now + ms;
                while let Some(d) = self.c.next_deadline().filter(|d| *d <= target) {
                    self.now = self.now.max(d);
                    self.c.tick(self.now);
                    self.absorb_tick(cov)?;
                }
                self.now = target;
                self.c.tick(self.now);
                self.absorb_tick(cov)
            }
            Op::Reload {
                partition,
                land_in_flight,
            } => {
                let (lost, kept): (Vec<_>, Vec<_>) = mem_take(&mut self.in_flight)
                    .into_iter()
                    .partition(|(_, p, _)| *p == partition);
                self.in_flight = kept;
                if land_in_flight {
                    for (_, p, record) in lost {
                        cov.landed_on_reload += 1;
                        self.append(p, record, cov)?;
                    }
                }
                // Markers already handed to the broker are dropped with the partition; the new
                // coordinator sends them again.
                let ids_here: BTreeSet<String> = IDS
                    .iter()
                    .filter(|id| self.c.partition_for(id) == partition)
                    .map(|id| (*id).to_owned())
                    .collect();
                self.marker_batches
                    .retain(|(_, b)| !ids_here.contains(&b.transactional_id));
                self.c.unload(partition);
                self.absorb(cov, None)?;
                let epoch = self.epochs.get(&partition).copied().unwrap_or(0) + 1;
                self.epochs.insert(partition, epoch);
                let records = self.log.get(&partition).cloned().unwrap_or_default();
                self.c
                    .load(self.now, partition, epoch, records)
                    .map_err(|e| violated("reload_equals_live", format!("load failed: {e}")))?;
                let before = self.marker_batches.len();
                self.absorb(cov, None)?;
                if self.marker_batches.len() > before {
                    cov.reloads_resuming_markers += 1;
                }
                Ok(())
            }
        }
    }

    /// An append lands in the log: record what it decided.
    fn append(&mut self, partition: i32, record: PersistRecord, cov: &mut Coverage) -> Check {
        let id = decode_key(&record.key)
            .ok()
            .flatten()
            .and_then(|k| IDS.iter().position(|i| *i == k))
            .ok_or_else(|| violated("records", "undecodable key".into()))?;
        match &record.value {
            None => cov.expirations += 1,
            Some(bytes) => {
                let v = TransactionLogValue::decode(bytes)
                    .map_err(|e| violated("records", format!("undecodable value: {e}")))?;
                match v.state {
                    TxnState::PrepareCommit | TxnState::PrepareAbort => {
                        let result = if v.state == TxnState::PrepareCommit {
                            TransactionResult::Commit
                        } else {
                            TransactionResult::Abort
                        };
                        let acked = self.acked.remove(&id).unwrap_or_default();
                        if !acked.is_subset(&v.partitions) {
                            return Err(violated(
                                "every_partition_gets_its_marker",
                                format!(
                                    "{} decided without acknowledged partitions {:?}",
                                    IDS[id],
                                    acked.difference(&v.partitions).collect::<Vec<_>>()
                                ),
                            ));
                        }
                        self.latest_decision.insert(id, self.decided.len());
                        self.decided.push(Decided {
                            id,
                            producer: ProducerIdAndEpoch::new(v.producer_id, v.producer_epoch),
                            result,
                            partitions: v.partitions.clone(),
                        });
                    }
                    TxnState::CompleteCommit => cov.commits_completed += 1,
                    TxnState::CompleteAbort => cov.aborts_completed += 1,
                    _ => {}
                }
            }
        }
        self.log
            .entry(partition)
            .or_default()
            .push((record.key, record.value));
        Ok(())
    }

    fn absorb_tick(&mut self, cov: &mut Coverage) -> Check {
        let before = self.in_flight.len();
        self.in_tick = true;
        let absorbed = self.absorb(cov, None);
        self.in_tick = false;
        absorbed?;
        for (_, _, record) in self.in_flight.iter().skip(before) {
            let fence = record
                .value
                .as_ref()
                .and_then(|v| TransactionLogValue::decode(v).ok())
                .is_some_and(|v| v.state == TxnState::PrepareAbort);
            if fence {
                cov.timeout_aborts += 1;
            }
        }
        Ok(())
    }

    /// Takes the coordinator's outputs and checks each against what was handed out.
    /// `caller` is the request of the call that produced them, if any.
    fn absorb(&mut self, cov: &mut Coverage, caller: Option<RequestId>) -> Check {
        let caller_stale = caller
            .and_then(|r| self.sent.get(&r))
            .is_some_and(|s| s.stale);
        // Aborts the coordinator starts itself: a timeout, or fencing for InitProducerId.
        let fencing = self.in_tick
            || caller
                .and_then(|r| self.sent.get(&r))
                .is_some_and(|s| s.kind == Kind::Init);
        for output in self.c.take_outputs() {
            match output {
                Output::Persist {
                    token,
                    partition,
                    coordinator_epoch,
                    record,
                } => {
                    if caller_stale {
                        return Err(violated(
                            "fenced_epoch_never_writes_again",
                            format!(
                                "a stale request caused a write: {:?}",
                                caller.map(|r| &self.sent[&r])
                            ),
                        ));
                    }
                    if Some(&coordinator_epoch) != self.epochs.get(&partition) {
                        return Err(violated(
                            "coordinator_epoch",
                            format!(
                                "append at epoch {coordinator_epoch} for partition {partition}"
                            ),
                        ));
                    }
                    if let Some(v) = record
                        .value
                        .as_ref()
                        .and_then(|v| TransactionLogValue::decode(v).ok())
                    {
                        if self.is_stale(ProducerIdAndEpoch::new(v.producer_id, v.producer_epoch)) {
                            return Err(violated(
                                "fenced_epoch_never_writes_again",
                                format!("record at a fenced epoch: {v:?}"),
                            ));
                        }
                        // A fencing abort must put the producer's epoch out of use: its
                        // markers carry an epoch above every one handed out.
                        let latest = self.latest.get(&v.producer_id).copied();
                        if fencing
                            && v.state == TxnState::PrepareAbort
                            && latest.is_some_and(|l| v.producer_epoch <= l && l < i16::MAX)
                        {
                            return Err(violated(
                                "fenced_epoch_never_writes_again",
                                format!("fencing abort does not bump past {latest:?}: {v:?}"),
                            ));
                        }
                    }
                    self.in_flight.push((token, partition, record));
                }
                Output::WriteMarkers(m) => {
                    if caller_stale {
                        return Err(violated(
                            "fenced_epoch_never_writes_again",
                            "a stale request caused markers".into(),
                        ));
                    }
                    let identity = ProducerIdAndEpoch::new(m.producer_id, m.producer_epoch);
                    if self.is_stale(identity) {
                        return Err(violated(
                            "fenced_epoch_never_writes_again",
                            format!("markers at a fenced epoch: {m:?}"),
                        ));
                    }
                    let partition = self.c.partition_for(&m.transactional_id);
                    if Some(&m.coordinator_epoch) != self.epochs.get(&partition) {
                        return Err(violated(
                            "coordinator_epoch",
                            format!("markers at epoch {}", m.coordinator_epoch),
                        ));
                    }
                    // Markers only ever carry out the latest decision of their id.
                    let id = IDS.iter().position(|i| *i == m.transactional_id);
                    let decision = id.and_then(|id| self.latest_decision.get(&id)).copied();
                    let Some(decided) = decision.and_then(|d| self.decided.get(d)) else {
                        return Err(violated(
                            "every_partition_gets_its_marker",
                            format!("markers for an undecided transaction: {m:?}"),
                        ));
                    };
                    let parts: BTreeSet<TopicPartition> = m.partitions.iter().cloned().collect();
                    if decided.result != m.result
                        || parts != decided.partitions
                        || decided.producer != identity
                    {
                        return Err(violated(
                            "every_partition_gets_its_marker",
                            format!("markers {m:?} differ from the decision {decided:?}"),
                        ));
                    }
                    for tp in &m.partitions {
                        let key = (decision.unwrap_or_default(), tp.clone());
                        if self.marked.get(&key).is_some_and(|r| *r != m.result) {
                            return Err(violated(
                                "every_partition_gets_its_marker",
                                format!("{tp:?} marked both ways"),
                            ));
                        }
                    }
                    self.marker_batches.push((decision.unwrap_or_default(), m));
                }
                Output::InitProducerId { request, response } => {
                    let sent = self.answered(request)?;
                    match response {
                        Ok(p) => self.hand_out(sent.id, p, cov),
                        Err(Error::ConcurrentTransactions) => {
                            cov.concurrent_refusals += 1;
                            // Answered later than its own call: after the fencing abort it
                            // asked for was persisted.
                            if caller != Some(request) {
                                cov.fenced_by_init += 1;
                            }
                        }
                        Err(_) => {}
                    }
                }
                Output::AddPartitions { request, response }
                | Output::AddOffsets { request, response } => {
                    let sent = self.answered(request)?;
                    match response {
                        Ok(()) => {
                            if sent.stale {
                                return Err(violated(
                                    "fenced_epoch_never_writes_again",
                                    format!("stale add accepted: {sent:?}"),
                                ));
                            }
                            self.acked
                                .entry(sent.id)
                                .or_default()
                                .extend(sent.partitions.iter().cloned());
                        }
                        Err(e) => self.refused(&sent, &e, cov),
                    }
                }
                Output::EndTxn { request, response } => {
                    let sent = self.answered(request)?;
                    match response {
                        Ok(p) => {
                            if sent.stale {
                                // Only a version 2 retry of a completed EndTxn may answer a
                                // superseded epoch, and only with what is already handed out.
                                let known = self
                                    .handed
                                    .get(&sent.id)
                                    .is_some_and(|h| h.last() == Some(&p));
                                if !known {
                                    return Err(violated(
                                        "fenced_epoch_never_writes_again",
                                        format!("stale EndTxn {sent:?} accepted with {p:?}"),
                                    ));
                                }
                            }
                            let bumped = p.epoch > sent.producer.epoch
                                || p.producer_id != sent.producer.producer_id;
                            // Answered after its own call: it wrote PrepareCommit/PrepareAbort.
                            // With version 2 that write must have bumped the epoch.
                            let wrote = caller != Some(request);
                            if wrote && matches!(sent.kind, Kind::End(_, true)) && !bumped {
                                return Err(violated(
                                    "fenced_epoch_never_writes_again",
                                    format!("version 2 EndTxn {sent:?} kept its epoch"),
                                ));
                            }
                            if bumped {
                                cov.v2_epoch_bumps += 1;
                            }
                            self.hand_out(sent.id, p, cov);
                        }
                        Err(e) => self.refused(&sent, &e, cov),
                    }
                }
            }
        }
        Ok(())
    }

    fn refused(&self, sent: &Sent, e: &Error, cov: &mut Coverage) {
        if sent.stale {
            cov.stale_requests_refused += 1;
        }
        if *e == Error::ConcurrentTransactions {
            cov.concurrent_refusals += 1;
        }
    }

    fn answered(&mut self, request: RequestId) -> Result<Sent, TestCaseError> {
        self.sent.remove(&request).ok_or_else(|| {
            violated(
                "one_response_per_request",
                format!("{request:?} answered twice or never sent"),
            )
        })
    }

    fn hand_out(&mut self, id: usize, p: ProducerIdAndEpoch, cov: &mut Coverage) {
        cov.handed_out += 1;
        let handed = self.handed.entry(id).or_default();
        if handed.last() != Some(&p) {
            handed.push(p);
        }
        let latest = self.latest.entry(p.producer_id).or_insert(p.epoch);
        *latest = (*latest).max(p.epoch);
    }

    /// Invariants that hold between any two steps.
    fn check(&self) -> Check {
        // one_ongoing_transaction_per_transactional_id: at most one write in flight per id,
        // the coordinator's token table agrees, and a transaction only opens once every marker
        // of the previous one of its id is written.
        let mut writes: BTreeMap<String, usize> = BTreeMap::new();
        for (_, _, record) in &self.in_flight {
            let id = decode_key(&record.key).ok().flatten().unwrap_or_default();
            *writes.entry(id).or_default() += 1;
        }
        for (id, n) in &writes {
            if *n > 1 {
                return Err(violated(
                    "one_ongoing_transaction_per_transactional_id",
                    format!("{n} writes in flight for {id}"),
                ));
            }
        }
        for (token, id) in &self.c.tokens {
            let consistent = self
                .c
                .entries
                .get(id)
                .and_then(|e| e.pending.as_ref())
                .is_some_and(|p| p.token == *token);
            if !consistent {
                return Err(violated(
                    "one_ongoing_transaction_per_transactional_id",
                    format!("token {token:?} of {id} has no matching pending write"),
                ));
            }
        }
        let pending = self
            .c
            .entries
            .values()
            .filter(|e| e.pending.is_some())
            .count();
        if pending != self.c.tokens.len() {
            return Err(violated(
                "one_ongoing_transaction_per_transactional_id",
                "pending writes and tokens disagree".into(),
            ));
        }
        for (id, entry) in &self.c.entries {
            if entry.persisted && entry.meta.state == TxnState::Ongoing {
                let idx = IDS.iter().position(|i| i == id).unwrap_or(usize::MAX);
                for (n, d) in self.decided.iter().enumerate() {
                    if d.id != idx {
                        continue;
                    }
                    let unmarked: Vec<_> = d
                        .partitions
                        .iter()
                        .filter(|tp| !self.marked.contains_key(&(n, (*tp).clone())))
                        .collect();
                    if !unmarked.is_empty() {
                        return Err(violated(
                            "one_ongoing_transaction_per_transactional_id",
                            format!("{id} opened a transaction before {unmarked:?} got markers"),
                        ));
                    }
                }
            }
        }
        self.check_reload_equals_live()
    }

    /// reload_equals_live: replaying each loaded partition's log rebuilds the durable state.
    fn check_reload_equals_live(&self) -> Check {
        let mut fresh = Coordinator::new(config());
        for (p, e) in self.c.loaded_partitions() {
            let records = self.log.get(&p).cloned().unwrap_or_default();
            fresh
                .load(self.now, p, e, records)
                .map_err(|e| violated("reload_equals_live", format!("replay failed: {e}")))?;
        }
        let durable = |c: &Coordinator| -> Vec<(String, TransactionLogValue)> {
            c.entries
                .iter()
                .filter(|(_, e)| e.persisted)
                .map(|(id, e)| (id.clone(), e.meta.clone()))
                .collect()
        };
        let (live, replayed) = (durable(&self.c), durable(&fresh));
        if live != replayed {
            return Err(violated(
                "reload_equals_live",
                format!("live {live:?}\nreplayed {replayed:?}"),
            ));
        }
        Ok(())
    }

    /// Acknowledges every append and delivers every marker until nothing is left, then checks
    /// that every decided transaction got all its markers and every request an answer.
    fn quiesce(&mut self, cov: &mut Coverage) -> Check {
        for _ in 0..1_000 {
            if let Some((token, partition, record)) = self.in_flight.pop() {
                self.append(partition, record, cov)?;
                self.c.persisted(self.now, token, Ok(()));
                self.absorb(cov, None)?;
            } else if !self.marker_batches.is_empty() {
                self.apply(&Op::Markers { pick: 0, all: true }, cov)?;
            } else if self.c.entries.values().any(|e| e.meta.state.is_prepare()) {
                // A completion whose append failed is retried by the timer.
                let Some(d) = self.c.next_deadline() else {
                    break;
                };
                self.now = self.now.max(d);
                self.c.tick(self.now);
                self.absorb_tick(cov)?;
            } else {
                break;
            }
            self.check()?;
        }
        for (n, d) in self.decided.iter().enumerate() {
            for tp in &d.partitions {
                match self.marked.get(&(n, tp.clone())) {
                    Some(r) if *r == d.result => {}
                    other => {
                        return Err(violated(
                            "every_partition_gets_its_marker",
                            format!("{d:?} {tp:?}: marked {other:?}"),
                        ));
                    }
                }
            }
        }
        if !self.sent.is_empty() {
            return Err(violated(
                "one_response_per_request",
                format!("never answered: {:?}", self.sent),
            ));
        }
        for e in self.c.entries.values() {
            if e.meta.state.is_prepare() {
                return Err(violated(
                    "every_partition_gets_its_marker",
                    format!("still deciding after quiescence: {:?}", e.meta),
                ));
            }
        }
        Ok(())
    }
}

fn mem_take<T: Default>(v: &mut T) -> T {
    std::mem::take(v)
}

fn run_case(ops: &[Op], cov: &mut Coverage) -> Check {
    let mut w = World::new();
    for op in ops {
        w.apply(op, cov)?;
        w.check()?;
        cov.steps += 1;
    }
    w.quiesce(cov)
}

#[test]
fn random_operation_sequences_keep_the_invariants() {
    let cases = std::env::var("WEIR_TXN_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let coverage = RefCell::new(Coverage::default());
    let strategy = proptest::collection::vec(op(), 1..80);
    let result = runner.run(&strategy, |ops| run_case(&ops, &mut coverage.borrow_mut()));
    if let Err(e) = result {
        panic!("{e}");
    }
    let cov = coverage.into_inner();
    eprintln!("{cases} cases: {cov:#?}");
    // Every scenario the invariants are about must actually have happened.
    let reached = [
        ("handed_out", cov.handed_out),
        ("commits_completed", cov.commits_completed),
        ("aborts_completed", cov.aborts_completed),
        ("fenced_by_init", cov.fenced_by_init),
        ("timeout_aborts", cov.timeout_aborts),
        ("expirations", cov.expirations),
        ("persist_failures", cov.persist_failures),
        ("reloads_resuming_markers", cov.reloads_resuming_markers),
        ("landed_on_reload", cov.landed_on_reload),
        ("v2_epoch_bumps", cov.v2_epoch_bumps),
        ("stale_requests_refused", cov.stale_requests_refused),
        ("verify_abortable", cov.verify_abortable),
        ("partial_markers", cov.partial_markers),
        ("concurrent_refusals", cov.concurrent_refusals),
    ];
    let missing: Vec<_> = reached.iter().filter(|(_, n)| *n < 5).collect();
    assert!(
        missing.is_empty(),
        "scenarios reached fewer than 5 times in {} steps: {missing:?}\n{cov:#?}",
        cov.steps
    );
    assert!(cov.steps > u64::from(cases) * 10, "{cov:#?}");
}
