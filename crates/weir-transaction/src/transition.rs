//! The state each transition writes, computed from the persisted state: Kafka's
//! `TransactionMetadata.prepare*` methods as pure functions. Validation of the request against
//! the state happens in `requests`; these only build the target value.
//!
//! Every target records the producer id it leaves as `previous_producer_id`, as Kafka's
//! `TxnTransitMetadata` does, so that after a rotation it names the old id.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::record::TransactionLogValue;
use crate::types::{
    Millis, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, ProducerIdAndEpoch, TopicPartition,
    TransactionResult, TransactionVersion, TxnState,
};

/// Kafka refuses to hand out the last two epochs of a producer id: `i16::MAX - 1` is the last a
/// client gets, so that the coordinator can always bump once more to fence it.
pub(crate) fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// The placeholder for a new transactional id before its first InitProducerId is persisted.
pub(crate) fn new_id(producer_id: i64, timeout_ms: i32, now: Millis) -> TransactionLogValue {
    TransactionLogValue {
        producer_id,
        previous_producer_id: NO_PRODUCER_ID,
        next_producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        last_producer_epoch: NO_PRODUCER_EPOCH,
        transaction_timeout_ms: timeout_ms,
        state: TxnState::Empty,
        partitions: BTreeSet::new(),
        last_update_timestamp_ms: now,
        start_timestamp_ms: -1,
        transaction_version: TransactionVersion::V0,
    }
}

fn base(m: &TransactionLogValue, state: TxnState, now: Millis) -> TransactionLogValue {
    TransactionLogValue {
        previous_producer_id: m.producer_id,
        state,
        last_update_timestamp_ms: now,
        ..m.clone()
    }
}

/// InitProducerId in Empty, CompleteCommit or CompleteAbort without a rotation: bump the epoch,
/// or recognise a retry (KIP-360), or fence a stale producer.
pub(crate) fn increment_epoch(
    m: &TransactionLogValue,
    timeout_ms: i32,
    expected: Option<ProducerIdAndEpoch>,
    now: Millis,
) -> Result<TransactionLogValue> {
    let bumped = || m.producer_epoch.checked_add(1).ok_or(Error::ProducerFenced);
    let (epoch, last) = match expected {
        // A producer starting afresh: a new epoch, and no last epoch a stale producer could
        // claim as a retry.
        None => (bumped()?, NO_PRODUCER_EPOCH),
        // The producer recovers with its own current epoch (or the id is brand new): bump and
        // remember the epoch it had, so that a lost response can be retried.
        Some(e) if m.producer_epoch == NO_PRODUCER_EPOCH || e.epoch == m.producer_epoch => {
            (bumped()?, m.producer_epoch)
        }
        // A retry of a bump whose response was lost: hand out the same epoch again.
        Some(e) if e.epoch == m.last_producer_epoch => (m.producer_epoch, m.last_producer_epoch),
        Some(_) => return Err(Error::ProducerFenced),
    };
    Ok(TransactionLogValue {
        next_producer_id: NO_PRODUCER_ID,
        producer_epoch: epoch,
        last_producer_epoch: last,
        transaction_timeout_ms: timeout_ms,
        partitions: BTreeSet::new(),
        start_timestamp_ms: -1,
        ..base(m, TxnState::Empty, now)
    })
}

/// InitProducerId when the epoch is exhausted: a new producer id at epoch 0. The last epoch is
/// kept when the producer named its epoch, so that its retry is recognised.
pub(crate) fn rotate_producer_id(
    m: &TransactionLogValue,
    new_producer_id: i64,
    timeout_ms: i32,
    record_last_epoch: bool,
    now: Millis,
) -> TransactionLogValue {
    TransactionLogValue {
        producer_id: new_producer_id,
        next_producer_id: NO_PRODUCER_ID,
        producer_epoch: 0,
        last_producer_epoch: if record_last_epoch {
            m.producer_epoch
        } else {
            NO_PRODUCER_EPOCH
        },
        transaction_timeout_ms: timeout_ms,
        partitions: BTreeSet::new(),
        start_timestamp_ms: -1,
        ..base(m, TxnState::Empty, now)
    }
}

/// AddPartitionsToTxn / AddOffsetsToTxn: Ongoing with the union of partitions; a transaction
/// starts (its timeout clock too) when the first partition is added.
pub(crate) fn add_partitions(
    m: &TransactionLogValue,
    added: &BTreeSet<TopicPartition>,
    version: TransactionVersion,
    now: Millis,
) -> TransactionLogValue {
    let starts = matches!(
        m.state,
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
    );
    TransactionLogValue {
        partitions: m.partitions.union(added).cloned().collect(),
        start_timestamp_ms: if starts { now } else { m.start_timestamp_ms },
        transaction_version: version,
        ..base(m, TxnState::Ongoing, now)
    }
}

/// EndTxn: PrepareCommit or PrepareAbort. With transaction version 2 the epoch is bumped (the
/// markers carry the new epoch, fencing the producer's late writes of this transaction) and,
/// when that exhausts it, `next_producer_id` names the id the client continues with.
/// `no_partition_added` marks a version 2 abort of a transaction that never started.
pub(crate) fn end(
    m: &TransactionLogValue,
    result: TransactionResult,
    version: TransactionVersion,
    next_producer_id: i64,
    no_partition_added: bool,
    now: Millis,
) -> TransactionLogValue {
    let state = match result {
        TransactionResult::Commit => TxnState::PrepareCommit,
        TransactionResult::Abort => TxnState::PrepareAbort,
    };
    let (epoch, last) = if version.bumps_epoch_on_end() {
        // At i16::MAX (only reachable through a fence) the epoch stays: the next producer id
        // takes over at completion.
        (m.producer_epoch.saturating_add(1), m.producer_epoch)
    } else {
        (m.producer_epoch, m.last_producer_epoch)
    };
    TransactionLogValue {
        next_producer_id,
        producer_epoch: epoch,
        last_producer_epoch: last,
        start_timestamp_ms: if no_partition_added {
            now
        } else {
            m.start_timestamp_ms
        },
        transaction_version: version,
        ..base(m, state, now)
    }
}

/// Aborting an Ongoing transaction to fence its producer (a newer InitProducerId, or the
/// transaction timed out): PrepareAbort with the epoch bumped once, which partition leaders
/// learn from the abort markers. The last epoch is cleared so that the fenced producer cannot
/// pass for a retry in InitProducerId.
pub(crate) fn fence(m: &TransactionLogValue, now: Millis) -> TransactionLogValue {
    TransactionLogValue {
        next_producer_id: NO_PRODUCER_ID,
        producer_epoch: m.producer_epoch.saturating_add(1),
        last_producer_epoch: NO_PRODUCER_EPOCH,
        ..base(m, TxnState::PrepareAbort, now)
    }
}

/// Every marker is written: CompleteCommit or CompleteAbort, no partitions; a pending producer
/// id rotation (transaction version 2) takes effect.
pub(crate) fn complete(m: &TransactionLogValue, now: Millis) -> TransactionLogValue {
    let state = if m.state == TxnState::PrepareCommit {
        TxnState::CompleteCommit
    } else {
        TxnState::CompleteAbort
    };
    let rotates = m.transaction_version.bumps_epoch_on_end() && m.next_producer_id >= 0;
    TransactionLogValue {
        producer_id: if rotates {
            m.next_producer_id
        } else {
            m.producer_id
        },
        producer_epoch: if rotates { 0 } else { m.producer_epoch },
        next_producer_id: NO_PRODUCER_ID,
        partitions: BTreeSet::new(),
        ..base(m, state, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_at(epoch: i16) -> TransactionLogValue {
        TransactionLogValue {
            producer_epoch: epoch,
            previous_producer_id: 7,
            ..new_id(7, 1000, 0)
        }
    }

    #[test]
    fn increment_follows_kip_360() {
        let m = empty_at(3);
        let fresh = increment_epoch(&m, 1000, None, 1).unwrap();
        assert_eq!((fresh.producer_epoch, fresh.last_producer_epoch), (4, -1));
        let recovering = increment_epoch(&m, 1000, Some(ProducerIdAndEpoch::new(7, 3)), 1).unwrap();
        assert_eq!(
            (recovering.producer_epoch, recovering.last_producer_epoch),
            (4, 3)
        );
        // Retrying the same request after the bump is persisted returns the same epoch.
        let retry =
            increment_epoch(&recovering, 1000, Some(ProducerIdAndEpoch::new(7, 3)), 2).unwrap();
        assert_eq!((retry.producer_epoch, retry.last_producer_epoch), (4, 3));
        assert_eq!(
            increment_epoch(&recovering, 1000, Some(ProducerIdAndEpoch::new(7, 2)), 2),
            Err(Error::ProducerFenced)
        );
    }

    #[test]
    fn version_2_end_bumps_and_complete_rotates() {
        let mut m = empty_at(i16::MAX - 1);
        m.state = TxnState::Ongoing;
        let prepare = end(
            &m,
            TransactionResult::Commit,
            TransactionVersion::V2,
            9,
            false,
            5,
        );
        assert_eq!(prepare.producer_epoch, i16::MAX);
        assert_eq!(prepare.last_producer_epoch, i16::MAX - 1);
        let done = complete(&prepare, 6);
        assert_eq!((done.producer_id, done.producer_epoch), (9, 0));
        assert_eq!(done.previous_producer_id, 7);
        assert_eq!(done.state, TxnState::CompleteCommit);
    }

    #[test]
    fn fence_never_overflows() {
        let mut m = empty_at(i16::MAX);
        m.state = TxnState::Ongoing;
        assert_eq!(fence(&m, 1).producer_epoch, i16::MAX);
        assert!(epoch_exhausted(i16::MAX - 1));
        assert!(!epoch_exhausted(i16::MAX - 2));
    }
}
