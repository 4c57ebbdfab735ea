//! DescribeTransactions, ListTransactions, and loading or unloading a `__transaction_state`
//! partition.

use std::collections::BTreeMap;

use crate::coordinator::{Coordinator, Entry};
use crate::error::{Error, Result};
use crate::record::{TransactionLogValue, decode_key};
use crate::types::{
    ListTransactionsFilter, ListTransactionsResponse, Millis, TransactionDescription,
    TransactionListing, TxnState,
};

impl Coordinator {
    /// Handles DescribeTransactions: one result per transactional id, in order. NOT_COORDINATOR
    /// for ids of partitions this broker does not lead, TRANSACTIONAL_ID_NOT_FOUND for unknown
    /// ids (including one whose first InitProducerId is still being written).
    pub fn describe_transactions(
        &self,
        transactional_ids: &[String],
    ) -> Vec<Result<TransactionDescription>> {
        transactional_ids
            .iter()
            .map(|id| {
                if id.is_empty() {
                    return Err(Error::InvalidRequest);
                }
                self.owner(id)?;
                let entry = self
                    .entries
                    .get(id)
                    .filter(|e| e.persisted)
                    .ok_or(Error::TransactionalIdNotFound)?;
                let m = &entry.meta;
                Ok(TransactionDescription {
                    transactional_id: id.clone(),
                    state: entry.reported_state(),
                    transaction_timeout_ms: m.transaction_timeout_ms,
                    transaction_start_time_ms: m.start_timestamp_ms,
                    producer_id: m.producer_id,
                    producer_epoch: m.producer_epoch,
                    partitions: if m.state.is_prepare() {
                        entry.markers_pending.clone()
                    } else {
                        m.partitions.clone()
                    },
                })
            })
            .collect()
    }

    /// Handles ListTransactions over every loaded partition. The duration filter compares
    /// `now` with the transaction start time, as Kafka does (so an id that never started a
    /// transaction, start time -1, passes it).
    pub fn list_transactions(
        &self,
        now: Millis,
        filter: &ListTransactionsFilter,
    ) -> ListTransactionsResponse {
        let mut states = Vec::new();
        let mut unknown_state_filters = Vec::new();
        for name in &filter.states {
            match TxnState::parse(name) {
                Some(s) => states.push(s),
                None => unknown_state_filters.push(name.clone()),
            }
        }
        let transactions = self
            .entries
            .iter()
            .filter(|(_, e)| e.persisted)
            .filter(|(_, e)| filter.states.is_empty() || states.contains(&e.reported_state()))
            .filter(|(_, e)| {
                filter.producer_ids.is_empty() || filter.producer_ids.contains(&e.meta.producer_id)
            })
            .filter(|(_, e)| {
                filter.duration_ms < 0
                    || now.saturating_sub(e.meta.start_timestamp_ms) > filter.duration_ms
            })
            .map(|(id, e)| TransactionListing {
                transactional_id: id.clone(),
                producer_id: e.meta.producer_id,
                state: e.reported_state(),
            })
            .collect();
        ListTransactionsResponse {
            unknown_state_filters,
            transactions,
        }
    }

    /// Takes over `__transaction_state` partition `partition` at leader epoch
    /// `coordinator_epoch`, rebuilding its transactional ids from its records `(key, value)` in
    /// log order: the last value of a key wins and a `None` value (tombstone) deletes it.
    /// Transactions found in PrepareCommit or PrepareAbort resume: their markers are sent
    /// again (as [`Output::WriteMarkers`](crate::Output::WriteMarkers), carrying the new
    /// coordinator epoch). Whatever was loaded for the partition before is replaced, its parked
    /// requests answered NOT_COORDINATOR. Keys of other versions are skipped; a record that
    /// does not decode is an error and loads nothing.
    pub fn load<I, K, V>(
        &mut self,
        now: Millis,
        partition: i32,
        coordinator_epoch: i32,
        records: I,
    ) -> Result<()>
    where
        I: IntoIterator<Item = (K, Option<V>)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut values: BTreeMap<String, Option<TransactionLogValue>> = BTreeMap::new();
        for (key, value) in records {
            let Some(id) = decode_key(key.as_ref())? else {
                continue;
            };
            let value = value
                .map(|v| TransactionLogValue::decode(v.as_ref()))
                .transpose()?;
            if value
                .as_ref()
                .is_some_and(|v| v.state == TxnState::PrepareEpochFence)
            {
                // Neither Kafka nor Weir writes it: a transition to it is never completed.
                return Err(Error::CorruptRecord {
                    at: 0,
                    reason: "PrepareEpochFence is never persisted",
                });
            }
            values.insert(id, value);
        }
        self.unload(partition);
        self.loaded.insert(partition, coordinator_epoch);
        let mut resume = Vec::new();
        for (id, value) in values {
            // Dead is how an expiring id may be written; it is as good as deleted.
            let Some(meta) = value.filter(|v| v.state != TxnState::Dead) else {
                continue;
            };
            if meta.state.is_prepare() {
                resume.push(id.clone());
            }
            self.release(&id);
            self.entries.insert(id, Entry::new(partition, meta, true));
        }
        for id in resume {
            self.start_markers(&id, now);
        }
        Ok(())
    }

    /// Gives up `__transaction_state` partition `partition` when this broker stops leading it:
    /// its transactional ids are dropped, and requests waiting on a write are answered
    /// NOT_COORDINATOR so that clients find the new coordinator. The broker drops the
    /// partition's unsent markers; the new coordinator sends them again.
    pub fn unload(&mut self, partition: i32) {
        self.loaded.remove(&partition);
        let ids: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.partition == partition)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.release(&id);
        }
    }

    /// The `__transaction_state` partitions this coordinator leads, with the leader epoch each
    /// was loaded at.
    pub fn loaded_partitions(&self) -> impl Iterator<Item = (i32, i32)> + '_ {
        self.loaded.iter().map(|(p, e)| (*p, *e))
    }
}
