//! Rule-by-rule tests of the coordinator with a fake clock and an in-memory
//! `__transaction_state`.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::record::{TransactionLogValue, decode_key, encode_key};
use crate::*;

const ID: &str = "tx";
const TIMEOUT: i32 = 60_000;
const EPOCH: i32 = 5;

type Log = BTreeMap<i32, Vec<(Bytes, Option<Bytes>)>>;

struct Harness {
    c: Coordinator,
    now: Millis,
    next_request: u64,
    ids: ProducerIdBlock,
    log: Log,
}

impl Harness {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(config: Config) -> Self {
        let mut c = Coordinator::new(config);
        let partition = c.partition_for(ID);
        c.load(0, partition, EPOCH, Vec::<(Bytes, Option<Bytes>)>::new())
            .unwrap();
        Self {
            c,
            now: 1_000_000,
            next_request: 0,
            ids: ProducerIdBlock::new(1000, 1000),
            log: Log::new(),
        }
    }

    fn request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// Performs every output as a healthy broker would: persists each record, then reports it,
    /// until nothing is left. Returns the non-persist outputs in order.
    fn settle(&mut self) -> Vec<Output> {
        let mut done = Vec::new();
        loop {
            let outputs = self.c.take_outputs();
            if outputs.is_empty() {
                return done;
            }
            for o in outputs {
                match o {
                    Output::Persist {
                        token,
                        partition,
                        record,
                        ..
                    } => {
                        self.log
                            .entry(partition)
                            .or_default()
                            .push((record.key, record.value));
                        self.c.persisted(self.now, token, Ok(()));
                    }
                    other => done.push(other),
                }
            }
        }
    }

    /// Fails the append of every queued record with `error`. Returns the other outputs.
    fn fail_persists(&mut self, error: PersistError) -> Vec<Output> {
        let mut done = Vec::new();
        for o in self.c.take_outputs() {
            match o {
                Output::Persist { token, .. } => self.c.persisted(self.now, token, Err(error)),
                other => done.push(other),
            }
        }
        done.extend(self.c.take_outputs());
        done
    }

    /// Takes the queued outputs without performing them.
    fn take(&mut self) -> Vec<Output> {
        self.c.take_outputs()
    }

    fn init_req(&mut self, id: &str, producer: Option<ProducerIdAndEpoch>) -> RequestId {
        let r = self.request();
        let req = InitProducerIdRequest {
            transactional_id: Some(id.into()),
            transaction_timeout_ms: TIMEOUT,
            producer,
        };
        self.c.init_producer_id(self.now, r, &req, &mut self.ids);
        r
    }

    fn init(&mut self, producer: Option<ProducerIdAndEpoch>) -> Result<ProducerIdAndEpoch> {
        let r = self.init_req(ID, producer);
        let out = self.settle();
        init_response(&out, r).unwrap()
    }

    fn add_req(
        &mut self,
        p: ProducerIdAndEpoch,
        parts: &[(&str, i32)],
        v: TransactionVersion,
    ) -> RequestId {
        let r = self.request();
        let req = AddPartitionsRequest {
            transactional_id: ID.into(),
            producer: p,
            partitions: parts
                .iter()
                .map(|(t, n)| TopicPartition::new(*t, *n))
                .collect(),
            transaction_version: v,
        };
        self.c.add_partitions_to_txn(self.now, r, &req);
        r
    }

    fn add(&mut self, p: ProducerIdAndEpoch, parts: &[(&str, i32)]) -> Result<()> {
        let r = self.add_req(p, parts, TransactionVersion::V0);
        let out = self.settle();
        add_response(&out, r).unwrap()
    }

    fn end_req(
        &mut self,
        p: ProducerIdAndEpoch,
        result: TransactionResult,
        v: TransactionVersion,
    ) -> RequestId {
        let r = self.request();
        let req = EndTxnRequest {
            transactional_id: ID.into(),
            producer: p,
            result,
            transaction_version: v,
        };
        self.c.end_txn(self.now, r, &req, &mut self.ids);
        r
    }

    /// EndTxn, settled: the response and the markers it sent.
    fn end(
        &mut self,
        p: ProducerIdAndEpoch,
        result: TransactionResult,
        v: TransactionVersion,
    ) -> (Result<ProducerIdAndEpoch>, Vec<TxnMarkers>) {
        let r = self.end_req(p, result, v);
        let out = self.settle();
        (end_response(&out, r).unwrap(), markers(&out))
    }

    fn write_markers(&mut self, m: &TxnMarkers) -> Vec<Output> {
        self.c
            .markers_written(self.now, &m.transactional_id, m.token, &m.partitions);
        self.settle()
    }

    fn describe(&self) -> Result<TransactionDescription> {
        self.c.describe_transactions(&[ID.into()]).pop().unwrap()
    }

    fn state(&self) -> TxnState {
        self.describe().unwrap().state
    }

    /// Fires every timer up to `now + ms`, as the broker would.
    fn advance(&mut self, ms: i64) -> Vec<Output> {
        let target = self.now + ms;
        let mut out = Vec::new();
        while let Some(d) = self.c.next_deadline().filter(|d| *d <= target) {
            self.now = self.now.max(d);
            self.c.tick(self.now);
            out.extend(self.settle());
        }
        self.now = target;
        self.c.tick(self.now);
        out.extend(self.settle());
        out
    }

    /// A fresh coordinator loaded from the log.
    fn reloaded(&self) -> Coordinator {
        let mut c = Coordinator::new(self.c.config().clone());
        for (p, e) in self.c.loaded_partitions() {
            let records = self.log.get(&p).cloned().unwrap_or_default();
            c.load(self.now, p, e, records).unwrap();
        }
        c
    }
}

fn init_response(out: &[Output], request: RequestId) -> Option<Result<ProducerIdAndEpoch>> {
    out.iter().find_map(|o| match o {
        Output::InitProducerId {
            request: r,
            response,
        } if *r == request => Some(response.clone()),
        _ => None,
    })
}

fn add_response(out: &[Output], request: RequestId) -> Option<Result<()>> {
    out.iter().find_map(|o| match o {
        Output::AddPartitions {
            request: r,
            response,
        }
        | Output::AddOffsets {
            request: r,
            response,
        } if *r == request => Some(response.clone()),
        _ => None,
    })
}

fn end_response(out: &[Output], request: RequestId) -> Option<Result<ProducerIdAndEpoch>> {
    out.iter().find_map(|o| match o {
        Output::EndTxn {
            request: r,
            response,
        } if *r == request => Some(response.clone()),
        _ => None,
    })
}

fn markers(out: &[Output]) -> Vec<TxnMarkers> {
    out.iter()
        .filter_map(|o| match o {
            Output::WriteMarkers(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn persisted_values(out: &[Output]) -> Vec<Option<TransactionLogValue>> {
    out.iter()
        .filter_map(|o| match o {
            Output::Persist { record, .. } => Some(
                record
                    .value
                    .as_ref()
                    .map(|v| TransactionLogValue::decode(v).unwrap()),
            ),
            _ => None,
        })
        .collect()
}

fn pe(producer_id: i64, epoch: i16) -> ProducerIdAndEpoch {
    ProducerIdAndEpoch::new(producer_id, epoch)
}

use TransactionResult::{Abort, Commit};
use TransactionVersion as TV;

// ---- InitProducerId ----

#[test]
fn a_new_transactional_id_gets_a_producer_id_at_epoch_0_once_persisted() {
    let mut h = Harness::new();
    let r = h.init_req(ID, None);
    let out = h.take();
    // Nothing is answered before the record is durable.
    assert!(init_response(&out, r).is_none());
    let values = persisted_values(&out);
    let v = values[0].as_ref().unwrap();
    assert_eq!(
        (v.producer_id, v.producer_epoch, v.state),
        (1000, 0, TxnState::Empty)
    );
    let Output::Persist {
        token,
        partition,
        coordinator_epoch,
        record,
    } = &out[0]
    else {
        panic!()
    };
    assert_eq!(*partition, h.c.partition_for(ID));
    assert_eq!(*coordinator_epoch, EPOCH);
    assert_eq!(decode_key(&record.key).unwrap().as_deref(), Some(ID));
    h.c.persisted(h.now, *token, Ok(()));
    assert_eq!(init_response(&h.take(), r).unwrap(), Ok(pe(1000, 0)));
    assert_eq!(h.state(), TxnState::Empty);
}

#[test]
fn re_init_bumps_the_epoch_and_fences_the_old_producer() {
    let mut h = Harness::new();
    let old = h.init(None).unwrap();
    let new = h.init(None).unwrap();
    assert_eq!(new, pe(1000, 1));
    assert_eq!(h.add(old, &[("t", 0)]), Err(Error::ProducerFenced));
    let (end, _) = h.end(old, Commit, TV::V0);
    assert_eq!(end, Err(Error::ProducerFenced));
    assert_eq!(h.add(new, &[("t", 0)]), Ok(()));
}

#[test]
fn init_validates_its_arguments() {
    let mut h = Harness::with(Config {
        max_transaction_timeout_ms: 1000,
        ..Config::default()
    });
    for timeout in [0, -1, 1001] {
        let r = h.request();
        let req = InitProducerIdRequest {
            transactional_id: Some(ID.into()),
            transaction_timeout_ms: timeout,
            producer: None,
        };
        h.c.init_producer_id(h.now, r, &req, &mut h.ids);
        assert_eq!(
            init_response(&h.take(), r).unwrap(),
            Err(Error::InvalidTransactionTimeout)
        );
    }
    let r = h.request();
    let req = InitProducerIdRequest {
        transactional_id: Some(String::new()),
        transaction_timeout_ms: 10,
        producer: None,
    };
    h.c.init_producer_id(h.now, r, &req, &mut h.ids);
    assert_eq!(
        init_response(&h.take(), r).unwrap(),
        Err(Error::InvalidRequest)
    );
}

#[test]
fn an_idempotent_producer_just_gets_a_producer_id() {
    let mut h = Harness::new();
    let r = h.request();
    let req = InitProducerIdRequest {
        transactional_id: None,
        transaction_timeout_ms: 0,
        producer: None,
    };
    h.c.init_producer_id(h.now, r, &req, &mut h.ids);
    let out = h.take();
    assert_eq!(out.len(), 1);
    assert_eq!(init_response(&out, r).unwrap(), Ok(pe(1000, 0)));
}

#[test]
fn ids_of_partitions_not_led_get_not_coordinator() {
    let mut h = Harness::new();
    let other = (0..100)
        .map(|i| format!("other-{i}"))
        .find(|id| h.c.partition_for(id) != h.c.partition_for(ID))
        .unwrap();
    let r = h.init_req(&other, None);
    assert_eq!(
        init_response(&h.take(), r).unwrap(),
        Err(Error::NotCoordinator)
    );
    assert_eq!(
        h.c.describe_transactions(&[other]).pop().unwrap(),
        Err(Error::NotCoordinator)
    );
}

#[test]
fn no_producer_id_available_is_load_in_progress_and_creates_nothing() {
    let mut h = Harness::new();
    let r = h.request();
    let req = InitProducerIdRequest {
        transactional_id: Some(ID.into()),
        transaction_timeout_ms: TIMEOUT,
        producer: None,
    };
    h.c.init_producer_id(h.now, r, &req, &mut || None);
    assert_eq!(
        init_response(&h.take(), r).unwrap(),
        Err(Error::CoordinatorLoadInProgress)
    );
    assert_eq!(h.describe(), Err(Error::TransactionalIdNotFound));
}

#[test]
fn init_during_an_ongoing_transaction_aborts_it_first() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    h.add(p, &[("t", 0), ("t", 1)]).unwrap();
    let r = h.init_req(ID, None);
    let out = h.take();
    let values = persisted_values(&out);
    let fence = values[0].as_ref().unwrap();
    assert_eq!(fence.state, TxnState::PrepareAbort);
    assert_eq!(fence.producer_epoch, 1);
    assert_eq!(fence.last_producer_epoch, NO_PRODUCER_EPOCH);
    // While the abort is being written it reports as PrepareEpochFence.
    assert_eq!(h.state(), TxnState::PrepareEpochFence);
    let Output::Persist { token, .. } = out[0] else {
        panic!()
    };
    h.c.persisted(h.now, token, Ok(()));
    let out = h.settle();
    assert_eq!(
        init_response(&out, r).unwrap(),
        Err(Error::ConcurrentTransactions)
    );
    let m = markers(&out).pop().unwrap();
    assert_eq!(
        (m.result, m.producer_epoch, m.coordinator_epoch),
        (Abort, 1, EPOCH)
    );
    assert_eq!(m.partitions.len(), 2);
    // The client retries while the markers are written…
    assert_eq!(h.init(None), Err(Error::ConcurrentTransactions));
    // …and the old producer is fenced already.
    assert_eq!(h.add(p, &[("t", 2)]), Err(Error::ProducerFenced));
    h.write_markers(&m);
    assert_eq!(h.state(), TxnState::CompleteAbort);
    assert_eq!(h.init(None), Ok(pe(1000, 2)));
}

#[test]
fn kip_360_recovery_bumps_and_a_lost_response_can_be_retried() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    let bumped = h.init(Some(p)).unwrap();
    assert_eq!(bumped, pe(1000, 1));
    // The same request again (the response was lost) gets the same epoch.
    assert_eq!(h.init(Some(p)), Ok(bumped));
    // An epoch older than both is a zombie.
    h.init(Some(bumped)).unwrap();
    assert_eq!(h.init(Some(p)), Err(Error::ProducerFenced));
    // So is another producer id.
    assert_eq!(h.init(Some(pe(7, 0))), Err(Error::ProducerFenced));
    // A fresh start without an epoch clears the last epoch: the old one cannot retry.
    let fresh = h.init(None).unwrap();
    assert_eq!(
        h.init(Some(pe(1000, fresh.epoch - 1))),
        Err(Error::ProducerFenced)
    );
}

/// Loads one transactional id in `state` at `epoch` from a crafted record.
fn load_at(h: &mut Harness, value: TransactionLogValue) {
    let partition = h.c.partition_for(ID);
    let records = vec![(encode_key(ID), Some(value.encode()))];
    h.log.insert(partition, records.clone());
    h.c.load(h.now, partition, EPOCH, records).unwrap();
}

fn value(state: TxnState, producer_id: i64, epoch: i16) -> TransactionLogValue {
    TransactionLogValue {
        producer_id,
        previous_producer_id: producer_id,
        next_producer_id: NO_PRODUCER_ID,
        producer_epoch: epoch,
        last_producer_epoch: NO_PRODUCER_EPOCH,
        transaction_timeout_ms: TIMEOUT,
        state,
        partitions: Default::default(),
        last_update_timestamp_ms: 1_000_000,
        start_timestamp_ms: -1,
        transaction_version: TV::V0,
    }
}

#[test]
fn an_exhausted_epoch_rotates_the_producer_id() {
    let mut h = Harness::new();
    load_at(&mut h, value(TxnState::CompleteCommit, 500, i16::MAX - 1));
    assert_eq!(h.init(None), Ok(pe(1000, 0)));

    let mut h = Harness::new();
    load_at(&mut h, value(TxnState::Empty, 500, i16::MAX - 1));
    let old = pe(500, i16::MAX - 1);
    assert_eq!(h.init(Some(old)), Ok(pe(1000, 0)));
    // The producer missed the response and retries with its old id and epoch.
    assert_eq!(h.init(Some(old)), Ok(pe(1000, 0)));
    // A stale epoch of the old id is not a retry.
    assert_eq!(h.init(Some(pe(500, 3))), Err(Error::ProducerFenced));
}

// ---- AddPartitionsToTxn / AddOffsetsToTxn ----

#[test]
fn add_partitions_checks_the_producer() {
    let mut h = Harness::new();
    assert_eq!(
        h.add(pe(1000, 0), &[("t", 0)]),
        Err(Error::InvalidProducerIdMapping)
    );
    let p = h.init(None).unwrap();
    assert_eq!(
        h.add(pe(9, 0), &[("t", 0)]),
        Err(Error::InvalidProducerIdMapping)
    );
    assert_eq!(h.add(pe(1000, 3), &[("t", 0)]), Err(Error::ProducerFenced));
    assert_eq!(h.add(p, &[("t", 0)]), Ok(()));
    let d = h.describe().unwrap();
    assert_eq!(d.state, TxnState::Ongoing);
    assert_eq!(d.transaction_start_time_ms, h.now);
    assert!(d.partitions.contains(&TopicPartition::new("t", 0)));
}

#[test]
fn partitions_already_in_the_transaction_are_answered_without_a_write() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    h.add(p, &[("t", 0), ("t", 1)]).unwrap();
    let r = h.add_req(p, &[("t", 1)], TV::V0);
    let out = h.take();
    assert_eq!(out.len(), 1);
    assert_eq!(add_response(&out, r).unwrap(), Ok(()));
}

#[test]
fn a_second_operation_while_a_write_is_in_flight_is_concurrent() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    let first = h.add_req(p, &[("t", 0)], TV::V0);
    let second = h.add_req(p, &[("t", 1)], TV::V0);
    let end = h.end_req(p, Commit, TV::V0);
    let init = h.init_req(ID, None);
    let out = h.settle();
    assert_eq!(add_response(&out, first).unwrap(), Ok(()));
    assert_eq!(
        add_response(&out, second).unwrap(),
        Err(Error::ConcurrentTransactions)
    );
    assert_eq!(
        end_response(&out, end).unwrap(),
        Err(Error::ConcurrentTransactions)
    );
    assert_eq!(
        init_response(&out, init).unwrap(),
        Err(Error::ConcurrentTransactions)
    );
}

#[test]
fn verify_only_reports_partitions_outside_the_transaction_as_abortable() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    h.add(p, &[("t", 0)]).unwrap();
    // An add still being written does not count yet.
    h.add_req(p, &[("t", 1)], TV::V0);
    let req = AddPartitionsRequest {
        transactional_id: ID.into(),
        producer: p,
        partitions: vec![TopicPartition::new("t", 0), TopicPartition::new("t", 1)],
        transaction_version: TV::V0,
    };
    let results = h.c.verify_partitions_in_txn(&req).unwrap();
    assert_eq!(results[0].1, Ok(()));
    assert_eq!(results[1].1, Err(Error::TransactionAbortable));
    h.settle();
    assert!(
        h.c.verify_partitions_in_txn(&req)
            .unwrap()
            .iter()
            .all(|(_, r)| r.is_ok())
    );
    let stale = AddPartitionsRequest {
        producer: pe(1000, 9),
        ..req.clone()
    };
    assert_eq!(
        h.c.verify_partitions_in_txn(&stale),
        Err(Error::ProducerFenced)
    );
    assert_eq!(h.end(p, Commit, TV::V0).0, Ok(p));
    assert_eq!(
        h.c.verify_partitions_in_txn(&req),
        Err(Error::ConcurrentTransactions)
    );
}

#[test]
fn add_offsets_adds_the_groups_offsets_partition() {
    let mut h = Harness::with(Config {
        offsets_topic_partitions: 7,
        ..Config::default()
    });
    let p = h.init(None).unwrap();
    let r = h.request();
    h.c.add_offsets_to_txn(
        h.now,
        r,
        &AddOffsetsRequest {
            transactional_id: ID.into(),
            producer: p,
            group_id: "hello".into(),
            transaction_version: TV::V0,
        },
    );
    let out = h.settle();
    assert!(matches!(&out[0], Output::AddOffsets { request, response: Ok(()) } if *request == r));
    let expected = TopicPartition::new(CONSUMER_OFFSETS_TOPIC, partition_for("hello", 7));
    assert!(h.describe().unwrap().partitions.contains(&expected));
}

// ---- EndTxn ----

#[test]
fn commit_writes_prepare_then_markers_then_complete() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    h.add(p, &[("a", 0), ("b", 1)]).unwrap();
    let r = h.end_req(p, Commit, TV::V0);
    let out = h.take();
    assert_eq!(
        persisted_values(&out)[0].as_ref().unwrap().state,
        TxnState::PrepareCommit
    );
    assert!(end_response(&out, r).is_none());
    let Output::Persist { token, .. } = out[0] else {
        panic!()
    };
    h.c.persisted(h.now, token, Ok(()));
    let out = h.settle();
    assert_eq!(end_response(&out, r).unwrap(), Ok(p));
    let m = markers(&out).pop().unwrap();
    assert_eq!(m.result, Commit);
    assert_eq!((m.producer_id, m.producer_epoch), (p.producer_id, p.epoch));
    assert_eq!(m.transactional_id, ID);
    // Describe shows the partitions still without a marker.
    h.c.markers_written(h.now, ID, m.token, &[TopicPartition::new("a", 0)]);
    let d = h.describe().unwrap();
    assert_eq!(d.state, TxnState::PrepareCommit);
    assert_eq!(d.partitions.len(), 1);
    assert!(h.take().is_empty());
    h.c.markers_written(h.now, ID, m.token, &[TopicPartition::new("b", 1)]);
    let out = h.take();
    let complete = persisted_values(&out)[0].clone().unwrap();
    assert_eq!(complete.state, TxnState::CompleteCommit);
    assert!(complete.partitions.is_empty());
    let Output::Persist { token, .. } = out[0] else {
        panic!()
    };
    h.c.persisted(h.now, token, Ok(()));
    assert_eq!(h.state(), TxnState::CompleteCommit);
}

#[test]
fn end_txn_retries_and_wrong_results_are_answered_as_kafka_does() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    assert_eq!(h.end(p, Commit, TV::V0).0, Err(Error::InvalidTxnState));
    assert_eq!(h.end(p, Abort, TV::V0).0, Err(Error::InvalidTxnState));
    h.add(p, &[("a", 0)]).unwrap();
    let (ok, m) = h.end(p, Commit, TV::V0);
    assert_eq!(ok, Ok(p));
    // While the markers are written: the same result is retriable, the other is not.
    assert_eq!(
        h.end(p, Commit, TV::V0).0,
        Err(Error::ConcurrentTransactions)
    );
    assert_eq!(h.end(p, Abort, TV::V0).0, Err(Error::InvalidTxnState));
    assert_eq!(h.add(p, &[("a", 1)]), Err(Error::ConcurrentTransactions));
    h.write_markers(&m[0]);
    // Once complete: the same result is a successful retry.
    assert_eq!(h.end(p, Commit, TV::V0), (Ok(p), vec![]));
    assert_eq!(h.end(p, Abort, TV::V0).0, Err(Error::InvalidTxnState));
    assert_eq!(
        h.end(pe(1000, 9), Commit, TV::V0).0,
        Err(Error::ProducerFenced)
    );
    assert_eq!(
        h.end(pe(3, 0), Commit, TV::V0).0,
        Err(Error::InvalidProducerIdMapping)
    );
    // A new transaction after a completed one starts a new clock.
    h.now += 10;
    h.add(p, &[("a", 1)]).unwrap();
    assert_eq!(h.describe().unwrap().transaction_start_time_ms, h.now);
}

#[test]
fn a_transaction_without_partitions_completes_without_markers() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    h.add(p, &[]).unwrap();
    let (ok, m) = h.end(p, Abort, TV::V0);
    assert_eq!(ok, Ok(p));
    assert!(m.is_empty());
    assert_eq!(h.state(), TxnState::CompleteAbort);
}

// ---- Persistence failures ----

#[test]
fn a_failed_write_changes_nothing_and_tells_the_client() {
    let mut h = Harness::new();
    // The first InitProducerId of an id: the id is forgotten.
    let r = h.init_req(ID, None);
    let out = h.fail_persists(PersistError::NotLeader);
    assert_eq!(init_response(&out, r).unwrap(), Err(Error::NotCoordinator));
    assert_eq!(h.describe(), Err(Error::TransactionalIdNotFound));
    let p = h.init(None).unwrap();
    assert_eq!(p, pe(1001, 0));

    let r = h.add_req(p, &[("t", 0)], TV::V0);
    let out = h.fail_persists(PersistError::Unavailable);
    assert_eq!(
        add_response(&out, r).unwrap(),
        Err(Error::CoordinatorNotAvailable)
    );
    assert_eq!(h.state(), TxnState::Empty);

    h.add(p, &[("t", 0)]).unwrap();
    let r = h.end_req(p, Commit, TV::V0);
    let out = h.fail_persists(PersistError::Other);
    assert_eq!(
        end_response(&out, r).unwrap(),
        Err(Error::UnknownServerError)
    );
    assert!(markers(&out).is_empty());
    assert_eq!(h.state(), TxnState::Ongoing);

    // A failed fence leaves the producer's epoch alone; the next fence bumps it once.
    let r = h.init_req(ID, None);
    let out = h.fail_persists(PersistError::Unavailable);
    assert_eq!(
        init_response(&out, r).unwrap(),
        Err(Error::CoordinatorNotAvailable)
    );
    assert_eq!(h.describe().unwrap().producer_epoch, 0);
    assert_eq!(h.add(p, &[("t", 0)]), Ok(()));
    assert_eq!(h.init(None), Err(Error::ConcurrentTransactions));
    assert_eq!(h.describe().unwrap().producer_epoch, 1);

    assert!(reload_matches(&h));
}

#[test]
fn a_failed_completion_is_retried_after_the_backoff() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    h.add(p, &[("t", 0)]).unwrap();
    let (_, m) = h.end(p, Commit, TV::V0);
    h.c.markers_written(h.now, ID, m[0].token, &m[0].partitions);
    h.fail_persists(PersistError::Unavailable);
    assert_eq!(h.state(), TxnState::PrepareCommit);
    let backoff = h.c.config().retry_backoff_ms;
    assert_eq!(h.c.next_deadline(), Some(h.now + backoff));
    h.advance(backoff);
    assert_eq!(h.state(), TxnState::CompleteCommit);
}

// ---- Timers ----

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    h.add(p, &[("t", 0)]).unwrap();
    let start = h.now;
    assert_eq!(h.c.next_deadline(), Some(start + i64::from(TIMEOUT) + 1));
    // Exactly at the timeout it is still open (Kafka aborts once start + timeout < now).
    let out = h.advance(i64::from(TIMEOUT));
    assert!(out.is_empty());
    let out = h.advance(1);
    let m = markers(&out).pop().unwrap();
    assert_eq!((m.result, m.producer_epoch), (Abort, 1));
    assert_eq!(h.end(p, Commit, TV::V0).0, Err(Error::ProducerFenced));
    h.write_markers(&m);
    assert_eq!(h.state(), TxnState::CompleteAbort);
    assert_eq!(h.init(None), Ok(pe(1000, 2)));
}

#[test]
fn idle_transactional_ids_expire_with_a_tombstone() {
    let expiration = 100_000;
    let mut h = Harness::with(Config {
        transactional_id_expiration_ms: expiration,
        ..Config::default()
    });
    let p = h.init(None).unwrap();
    h.advance(expiration - 1);
    // Activity restarts the clock.
    h.add(p, &[("t", 0)]).unwrap();
    h.end(p, Abort, TV::V0).1.iter().for_each(|m| {
        h.c.markers_written(h.now, ID, m.token, &m.partitions);
    });
    h.settle();
    let last = h.now;
    assert_eq!(h.c.next_deadline(), Some(last + expiration));
    h.advance(expiration - 1);
    assert!(h.describe().is_ok());
    h.advance(1);
    assert_eq!(h.describe(), Err(Error::TransactionalIdNotFound));
    let (key, value) = h.log.values().next().unwrap().last().unwrap().clone();
    assert_eq!(decode_key(&key).unwrap().as_deref(), Some(ID));
    assert_eq!(value, None);
    assert_eq!(h.c.next_deadline(), None);
    // The id starts over with a new producer id.
    assert_eq!(h.init(None), Ok(pe(1001, 0)));
}

#[test]
fn open_transactions_never_expire() {
    let mut h = Harness::with(Config {
        transactional_id_expiration_ms: 10,
        ..Config::default()
    });
    let p = h.init(None).unwrap();
    h.add(p, &[("t", 0)]).unwrap();
    h.advance(100);
    assert_eq!(h.state(), TxnState::Ongoing);
}

// ---- Load, unload ----

#[test]
fn loading_resumes_markers_of_decided_transactions() {
    let mut h = Harness::new();
    let mut v = value(TxnState::PrepareCommit, 42, 3);
    v.partitions.insert(TopicPartition::new("t", 0));
    v.start_timestamp_ms = 5;
    load_at(&mut h, v);
    let out = h.take();
    let m = markers(&out).pop().unwrap();
    assert_eq!((m.producer_id, m.producer_epoch, m.result), (42, 3, Commit));
    assert_eq!(m.coordinator_epoch, EPOCH);
    // Reports quoting other markers (an earlier transaction, a previous load) are ignored.
    h.c.markers_written(h.now, ID, MarkersToken(999), &m.partitions);
    assert!(h.take().is_empty());
    h.write_markers(&m);
    assert_eq!(h.state(), TxnState::CompleteCommit);
    assert!(reload_matches(&h));
}

#[test]
fn loading_skips_tombstones_and_rejects_corrupt_records() {
    let mut c = Coordinator::new(Config::default());
    let partition = c.partition_for(ID);
    let v = value(TxnState::Empty, 1, 0).encode();
    c.load(
        0,
        partition,
        1,
        vec![(encode_key(ID), Some(v.clone())), (encode_key(ID), None)],
    )
    .unwrap();
    assert_eq!(
        c.describe_transactions(&[ID.into()]).pop().unwrap(),
        Err(Error::TransactionalIdNotFound)
    );
    let err = c
        .load(
            0,
            partition,
            2,
            vec![(encode_key(ID), Some(Bytes::from_static(&[0, 1, 2])))],
        )
        .unwrap_err();
    assert_eq!(err.code(), 2);
    // A failed load changes nothing: the partition is still held at epoch 1.
    assert_eq!(
        c.loaded_partitions().collect::<Vec<_>>(),
        vec![(partition, 1)]
    );
}

#[test]
fn unloading_answers_waiting_requests_not_coordinator() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    let r = h.add_req(p, &[("t", 0)], TV::V0);
    let Output::Persist { token, .. } = h.take()[0].clone() else {
        panic!()
    };
    h.c.unload(h.c.partition_for(ID));
    assert_eq!(
        add_response(&h.take(), r).unwrap(),
        Err(Error::NotCoordinator)
    );
    // The append's late outcome is ignored.
    h.c.persisted(h.now, token, Ok(()));
    assert!(h.take().is_empty());
    assert_eq!(h.add(p, &[("t", 0)]), Err(Error::NotCoordinator));
    assert_eq!(h.c.next_deadline(), None);
}

#[test]
fn a_reload_at_a_new_epoch_carries_it_into_markers() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    h.add(p, &[("t", 0)]).unwrap();
    let (_, m) = h.end(p, Abort, TV::V0);
    assert_eq!(m[0].coordinator_epoch, EPOCH);
    let partition = h.c.partition_for(ID);
    let records = h.log[&partition].clone();
    h.c.load(h.now, partition, EPOCH + 1, records).unwrap();
    let m = markers(&h.take()).pop().unwrap();
    assert_eq!(m.coordinator_epoch, EPOCH + 1);
    assert_eq!(m.result, Abort);
}

/// Whether replaying the log yields the durable state the live coordinator holds.
fn reload_matches(h: &Harness) -> bool {
    let reloaded = h.reloaded();
    let durable = |c: &Coordinator| -> Vec<(String, TransactionLogValue)> {
        c.entries
            .iter()
            .filter(|(_, e)| e.persisted)
            .map(|(id, e)| (id.clone(), e.meta.clone()))
            .collect()
    };
    durable(&h.c) == durable(&reloaded)
}

// ---- Describe, list ----

#[test]
fn list_filters_by_state_producer_and_duration() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    h.add(p, &[("t", 0)]).unwrap();
    let all =
        h.c.list_transactions(h.now, &ListTransactionsFilter::default());
    assert_eq!(all.transactions.len(), 1);
    assert_eq!(all.transactions[0].state, TxnState::Ongoing);
    let filter = |states: &[&str], pids: &[i64], duration: i64| ListTransactionsFilter {
        states: states.iter().map(|s| (*s).to_owned()).collect(),
        producer_ids: pids.to_vec(),
        duration_ms: duration,
    };
    let by_state =
        h.c.list_transactions(h.now, &filter(&["Empty", "Bogus"], &[], -1));
    assert!(by_state.transactions.is_empty());
    assert_eq!(by_state.unknown_state_filters, vec!["Bogus".to_owned()]);
    assert_eq!(
        h.c.list_transactions(h.now, &filter(&["Ongoing"], &[1000], -1))
            .transactions
            .len(),
        1
    );
    assert!(
        h.c.list_transactions(h.now, &filter(&[], &[7], -1))
            .transactions
            .is_empty()
    );
    assert!(
        h.c.list_transactions(h.now + 10, &filter(&[], &[], 10))
            .transactions
            .is_empty()
    );
    assert_eq!(
        h.c.list_transactions(h.now + 11, &filter(&[], &[], 10))
            .transactions
            .len(),
        1
    );
}

#[test]
fn describe_reports_kafkas_fields() {
    let mut h = Harness::new();
    assert_eq!(
        h.c.describe_transactions(&[String::new()]).pop().unwrap(),
        Err(Error::InvalidRequest)
    );
    let p = h.init(None).unwrap();
    h.add(p, &[("t", 3)]).unwrap();
    let d = h.describe().unwrap();
    assert_eq!(d.transactional_id, ID);
    assert_eq!(d.transaction_timeout_ms, TIMEOUT);
    assert_eq!((d.producer_id, d.producer_epoch), (p.producer_id, p.epoch));
    assert_eq!(d.state.as_str(), "Ongoing");
}

// ---- Transaction version 2 (KIP-890 part 2) ----

#[test]
fn version_2_bumps_the_epoch_at_every_end() {
    let mut h = Harness::new();
    let p0 = h.init(None).unwrap();
    let r = h.add_req(p0, &[("t", 0)], TV::V2);
    h.settle();
    let _ = r;
    let (resp, m) = h.end(p0, Commit, TV::V2);
    let p1 = resp.unwrap();
    assert_eq!(p1, pe(1000, 1));
    // The markers carry the bumped epoch and the version.
    assert_eq!((m[0].producer_epoch, m[0].transaction_version), (1, TV::V2));
    // Old epoch: a retry of that EndTxn, answered CONCURRENT_TRANSACTIONS while the markers are
    // written and OK (with the new epoch) after.
    assert_eq!(
        h.end(p0, Commit, TV::V2).0,
        Err(Error::ConcurrentTransactions)
    );
    h.write_markers(&m[0]);
    assert_eq!(h.end(p0, Commit, TV::V2), (Ok(p1), vec![]));
    assert_eq!(h.end(p0, Abort, TV::V2).0, Err(Error::InvalidTxnState));
    // The next transaction uses the new epoch; the old one is fenced.
    assert_eq!(h.add(p0, &[("t", 0)]), Err(Error::ProducerFenced));
    h.add_req(p1, &[("t", 0)], TV::V2);
    h.settle();
    let (resp, _) = h.end(p1, Abort, TV::V2);
    assert_eq!(resp, Ok(pe(1000, 2)));
    assert!(reload_matches(&h));
}

#[test]
fn version_2_accepts_an_abort_with_no_transaction_open() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    assert_eq!(h.end(p, Commit, TV::V2).0, Err(Error::InvalidTxnState));
    let (resp, m) = h.end(p, Abort, TV::V2);
    assert_eq!(resp, Ok(pe(1000, 1)));
    assert!(m.is_empty());
    assert_eq!(h.state(), TxnState::CompleteAbort);
    // In CompleteAbort the current epoch aborts again (a new, empty abort)…
    assert_eq!(h.end(pe(1000, 1), Abort, TV::V2).0, Ok(pe(1000, 2)));
    // …and in CompleteAbort/Empty a retry epoch of a commit is refused.
    assert_eq!(
        h.end(pe(1000, 1), Commit, TV::V2).0,
        Err(Error::InvalidTxnState)
    );
    let fresh = h.init(None).unwrap();
    assert_eq!(
        h.end(pe(1000, fresh.epoch - 1), Abort, TV::V2).0,
        Err(Error::ProducerFenced)
    );
}

#[test]
fn version_2_rotates_the_producer_id_when_the_epoch_runs_out() {
    let mut h = Harness::new();
    let mut v = value(TxnState::Ongoing, 500, i16::MAX - 1);
    v.partitions.insert(TopicPartition::new("t", 0));
    v.start_timestamp_ms = h.now;
    v.transaction_version = TV::V2;
    load_at(&mut h, v);
    let old = pe(500, i16::MAX - 1);
    let (resp, m) = h.end(old, Commit, TV::V2);
    // The client is told the id it continues with; the markers still fence the old one.
    assert_eq!(resp, Ok(pe(1000, 0)));
    assert_eq!((m[0].producer_id, m[0].producer_epoch), (500, i16::MAX));
    // The new id must wait for the markers.
    assert_eq!(
        h.add(pe(1000, 0), &[("t", 0)]),
        Err(Error::ConcurrentTransactions)
    );
    h.write_markers(&m[0]);
    let d = h.describe().unwrap();
    assert_eq!(
        (d.producer_id, d.producer_epoch, d.state),
        (1000, 0, TxnState::CompleteCommit)
    );
    // A retry with the old identity is recognised.
    assert_eq!(h.end(old, Commit, TV::V2).0, Ok(pe(1000, 0)));
    h.add_req(pe(1000, 0), &[("t", 1)], TV::V2);
    assert!(h.settle().iter().any(|o| matches!(
        o,
        Output::AddPartitions {
            response: Ok(()),
            ..
        }
    )));
    assert!(reload_matches(&h));
}

// ---- State table ----

#[test]
fn transitions_follow_kafkas_table() {
    use TxnState::*;
    let allowed = |to: TxnState| -> Vec<TxnState> {
        TxnState::ALL
            .into_iter()
            .filter(|from| to.can_follow(*from))
            .collect()
    };
    assert_eq!(allowed(Empty), vec![Empty, CompleteCommit, CompleteAbort]);
    assert_eq!(
        allowed(Ongoing),
        vec![Empty, Ongoing, CompleteCommit, CompleteAbort]
    );
    assert_eq!(allowed(PrepareCommit), vec![Ongoing]);
    assert_eq!(
        allowed(PrepareAbort),
        vec![
            Empty,
            Ongoing,
            CompleteCommit,
            CompleteAbort,
            PrepareEpochFence
        ]
    );
    assert_eq!(allowed(CompleteCommit), vec![PrepareCommit]);
    assert_eq!(allowed(CompleteAbort), vec![PrepareAbort]);
    assert_eq!(allowed(Dead), vec![Empty, CompleteCommit, CompleteAbort]);
    assert_eq!(allowed(PrepareEpochFence), vec![Ongoing]);
    for s in TxnState::ALL {
        assert_eq!(TxnState::from_id(s.id()), Some(s));
        assert_eq!(TxnState::parse(s.as_str()), Some(s));
    }
    assert_eq!(TxnState::parse("ongoing"), None);
}

// ---- Found by the property test ----

#[test]
fn a_second_init_while_the_first_of_a_new_id_is_written_does_not_lose_it() {
    let mut h = Harness::new();
    let first = h.init_req(ID, None);
    let second = h.init_req(ID, None);
    let out = h.settle();
    assert_eq!(
        init_response(&out, second).unwrap(),
        Err(Error::ConcurrentTransactions)
    );
    assert_eq!(init_response(&out, first).unwrap(), Ok(pe(1000, 0)));
    assert!(h.c.tokens.is_empty());
    assert_eq!(h.state(), TxnState::Empty);
}

#[test]
fn a_late_marker_report_of_the_previous_transaction_at_the_same_epoch_is_ignored() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    h.add(p, &[("t", 0)]).unwrap();
    let (_, first) = h.end(p, Commit, TV::V0);
    h.write_markers(&first[0]);
    // Version 1: the next transaction has the same producer id and epoch.
    h.add(p, &[("t", 0), ("t", 1)]).unwrap();
    let (_, second) = h.end(p, Abort, TV::V0);
    assert_eq!(
        (second[0].producer_id, second[0].producer_epoch),
        (first[0].producer_id, first[0].producer_epoch)
    );
    // The broker reports the first transaction's marker again, late.
    h.c.markers_written(h.now, ID, first[0].token, &second[0].partitions);
    assert!(h.take().is_empty());
    assert_eq!(h.describe().unwrap().partitions.len(), 2);
    h.write_markers(&second[0]);
    assert_eq!(h.state(), TxnState::CompleteAbort);
}

#[test]
fn a_version_2_retry_needs_a_version_2_bump() {
    let mut h = Harness::new();
    let zombie = h.init(None).unwrap();
    let current = h.init(None).unwrap();
    h.add(current, &[("t", 0)]).unwrap();
    let (_, m) = h.end(current, Commit, TV::V0);
    h.write_markers(&m[0]);
    // CompleteCommit at epoch 1 after a version 1 end: epoch 0 is a zombie, not a retry.
    assert_eq!(h.end(zombie, Commit, TV::V2).0, Err(Error::ProducerFenced));
}

#[test]
fn a_version_2_producer_timed_out_recovers_by_aborting() {
    let mut h = Harness::new();
    let p = h.init(None).unwrap();
    h.add_req(p, &[("t", 0)], TV::V2);
    h.settle();
    let out = h.advance(i64::from(TIMEOUT) + 1);
    let m = markers(&out).pop().unwrap();
    assert_eq!(m.producer_epoch, 1);
    h.write_markers(&m);
    // As in Kafka, the producer's abort at its old epoch is taken for a retry of the abort the
    // timeout did, and it continues with the bumped epoch.
    assert_eq!(h.end(p, Abort, TV::V2).0, Ok(pe(1000, 1)));
    assert_eq!(h.end(p, Commit, TV::V2).0, Err(Error::InvalidTxnState));
}
