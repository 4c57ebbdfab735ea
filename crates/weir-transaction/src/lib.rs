//! Kafka's transaction coordinator (KIP-98, KIP-360, KIP-890) as a state machine with no I/O:
//! the broker feeds it requests and the time, and performs the [`Output`]s it returns —
//! appending records to `__transaction_state`, answering requests once their record is
//! durable, and writing transaction markers to the partitions of decided transactions.
//!
//! ```
//! use weir_transaction::*;
//!
//! let mut c = Coordinator::new(Config::default());
//! let id = "orders-tx";
//! // The broker leads the id's __transaction_state partition at leader epoch 3.
//! c.load(0, c.partition_for(id), 3, Vec::<(Vec<u8>, Option<Vec<u8>>)>::new()).unwrap();
//! let mut ids = ProducerIdBlock::new(1000, 100);
//!
//! // InitProducerId: the new epoch is written, then handed out.
//! let init = InitProducerIdRequest {
//!     transactional_id: Some(id.into()),
//!     transaction_timeout_ms: 60_000,
//!     producer: None,
//! };
//! c.init_producer_id(0, RequestId(1), &init, &mut ids);
//! let Some(Output::Persist { token, .. }) = c.take_outputs().pop() else { panic!() };
//! c.persisted(0, token, Ok(()));
//! let Some(Output::InitProducerId { response: Ok(producer), .. }) = c.take_outputs().pop()
//! else { panic!() };
//! assert_eq!(producer, ProducerIdAndEpoch::new(1000, 0));
//!
//! // AddPartitionsToTxn, then EndTxn(commit).
//! let add = AddPartitionsRequest {
//!     transactional_id: id.into(),
//!     producer,
//!     partitions: vec![TopicPartition::new("orders", 0)],
//!     transaction_version: TransactionVersion::V0,
//! };
//! c.add_partitions_to_txn(1, RequestId(2), &add);
//! let Some(Output::Persist { token, .. }) = c.take_outputs().pop() else { panic!() };
//! c.persisted(1, token, Ok(()));
//! c.take_outputs();
//! let end = EndTxnRequest {
//!     transactional_id: id.into(),
//!     producer,
//!     result: TransactionResult::Commit,
//!     transaction_version: TransactionVersion::V0,
//! };
//! c.end_txn(2, RequestId(3), &end, &mut ids);
//! let Some(Output::Persist { token, .. }) = c.take_outputs().pop() else { panic!() };
//! c.persisted(2, token, Ok(()));
//! // EndTxn is answered once PrepareCommit is durable; the markers follow.
//! let outputs = c.take_outputs();
//! assert!(matches!(outputs[0], Output::EndTxn { response: Ok(_), .. }));
//! let Output::WriteMarkers(markers) = &outputs[1] else { panic!() };
//! assert_eq!(markers.coordinator_epoch, 3);
//! c.markers_written(3, id, markers.token, &markers.partitions);
//! // CompleteCommit is written; the transaction is done once it is durable.
//! let Some(Output::Persist { token, .. }) = c.take_outputs().pop() else { panic!() };
//! c.persisted(3, token, Ok(()));
//! let described = c.describe_transactions(&[id.into()]).pop().unwrap().unwrap();
//! assert_eq!(described.state, TxnState::CompleteCommit);
//! ```
//!
//! # Layout
//! - `types`: the inputs and outputs in Kafka's vocabulary ([`InitProducerIdRequest`],
//!   [`Output`], [`TxnState`] with Kafka's transition table, …), re-exported at the crate
//!   root.
//! - [`Coordinator`] (`coordinator`): the transactional ids, the one-write-in-flight
//!   discipline ([`Coordinator::persisted`]), markers ([`Coordinator::markers_written`]) and
//!   timers ([`Coordinator::tick`]: transaction timeouts, transactional id expiration).
//! - `requests`: InitProducerId, AddPartitionsToTxn (and its verify-only form),
//!   AddOffsetsToTxn, EndTxn — the checks, in Kafka's order, that decide between answering and
//!   writing.
//! - `transition`: the state each transition writes (Kafka's `TransactionMetadata.prepare*`),
//!   as pure functions.
//! - `admin`: DescribeTransactions, ListTransactions, [`Coordinator::load`] and
//!   [`Coordinator::unload`].
//! - [`record`]: the `__transaction_state` key and value formats.
//! - [`ProducerIdAllocator`]: where new producer ids come from.
//! - [`partition_for`]: which `__transaction_state` partition owns a transactional id
//!   (FindCoordinator), and which `__consumer_offsets` partition AddOffsetsToTxn adds.
//!
//! Data flows one way: the broker decodes a request → calls the [`Coordinator`] with `now` →
//! takes [`Output`]s → performs them: [`Output::Persist`] is appended to its partition and
//! reported back with [`Coordinator::persisted`] (which releases the response that waited on
//! it), [`Output::WriteMarkers`] is grouped by partition leader into WriteTxnMarkers requests
//! and each written partition reported with [`Coordinator::markers_written`], responses are
//! sent. Then it arms one timer at [`Coordinator::next_deadline`] and calls
//! [`Coordinator::tick`] when it fires. On becoming leader of a `__transaction_state`
//! partition the broker replays it into [`Coordinator::load`]; on losing it, calls
//! [`Coordinator::unload`].
//!
//! # Decisions
//! - **Kafka's record layout, plus one tagged field.** Keys are `TransactionLogKey` v0, values
//!   `TransactionLogValue` v1 (read: v0 and v1), byte for byte as Kafka writes them, as
//!   `weir-group` does for `__consumer_offsets`: operators' tools (`kafka-dump-log
//!   --transaction-log-decoder`) read Weir's topic, and no second format needs a spec. Kafka
//!   keeps the last producer epoch in memory only, so a KIP-360 or version 2 retry that spans a
//!   failover fails; Weir persists it in tagged field [`record::LAST_PRODUCER_EPOCH_TAG`],
//!   which Kafka readers skip as unknown. With it, replaying the records rebuilds exactly the
//!   state the live coordinator had (the `reload_equals_live` invariant).
//! - **A transition takes effect when its record is durable, and only then.** Each
//!   transactional id has at most one write in flight ([`Output::Persist`] with a
//!   [`PersistToken`]); requests meanwhile get CONCURRENT_TRANSACTIONS. On a failed append
//!   nothing changed, so there is nothing to revert. Kafka keeps an epoch bumped by a failed
//!   fence in memory (`hasFailedEpochFence`) so a second fence does not bump again; since
//!   Weir never applied the bump, the next fence computes the same epoch. Unlike
//!   `weir-group`, whose outputs are ordered, this crate needs the explicit acknowledgement:
//!   markers must not be sent for a PrepareCommit that is not durable, and a failed write
//!   must reach the client as NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE.
//! - **Producer ids come from a [`ProducerIdAllocator`] passed per call** (a closure works),
//!   so the broker can share its controller-granted block with idempotent producers; an empty
//!   allocator yields COORDINATOR_LOAD_IN_PROGRESS, as Kafka's producer id manager does.
//! - **The coordinator epoch is the `__transaction_state` partition's leader epoch**, given to
//!   `load`; it is carried in every [`Output::Persist`] (so the broker can refuse an append
//!   for an epoch it no longer leads) and every [`TxnMarkers`].
//! - **Deadlines are exact.** Kafka scans for timed-out transactions every 10 s and for
//!   expired ids every hour; here [`Coordinator::next_deadline`] is the earliest exact
//!   deadline, so tests need no polling and timeouts are not up to 10 s late. A failed write
//!   the coordinator started itself is retried after [`Config::retry_backoff_ms`].
//! - **Markers carry a [`MarkersToken`]** that [`Coordinator::markers_written`] must quote.
//!   With transaction versions 0 and 1 consecutive transactions of a producer share its
//!   epoch, so producer id and epoch cannot tell a late report about the previous transaction
//!   from one about the current; Kafka avoids the question by holding the in-memory marker
//!   entry, which a sans-IO API cannot hand out.
//! - **A fencing abort bumps the epoch once**, for every transaction version (Kafka's version
//!   2 path bumps it a second time when writing PrepareAbort); the markers carry the bumped
//!   epoch, which is what fences the producer's late writes.
//! - **PrepareEpochFence is reported, not persisted.** As in Kafka it is never written (the
//!   record is PrepareAbort with the bumped epoch); DescribeTransactions and ListTransactions
//!   report it while that write is in flight, where Kafka shows Ongoing.
//! - **Transaction version 2 (KIP-890 part 2) is implemented**: EndTxn bumps the epoch (and
//!   answers with the new one), rotates to a new producer id when the epoch runs out (the
//!   answer names the new id at epoch 0), recognises retries by the epoch just before the
//!   current one, and accepts an abort with no transaction open. The implicit partition add is
//!   a partition leader's AddPartitionsToTxn with [`TransactionVersion::V2`]; TxnOffsetCommit's
//!   implicit add of the offsets partition is the same call, made by the group coordinator.
//!   Two departures from Kafka: when the epoch runs out, EndTxn answers with the new producer
//!   id at epoch 0 (the identity the client continues with) rather than the old id at
//!   `i16::MAX`; and a retry is recognised by the epoch just below the current one only when
//!   that epoch was bumped by a version 2 end, so a producer fenced by InitProducerId cannot
//!   pass its old epoch off as a retry after the new producer's version 1 EndTxn and be handed
//!   the new epoch.
//!
//! # Tests
//! Rule-by-rule unit tests next to the code (`tests`, plus each module's own), and
//! `invariants`: a property test over random sequences of InitProducerId (fresh and KIP-360),
//! AddPartitionsToTxn, AddOffsetsToTxn, verify-only, EndTxn (versions 0 and 2) from current and
//! stale producers, appends acknowledged out of order or failed, markers delivered partially,
//! time passing and partitions reloaded (in-flight appends lost or landed). After every step it
//! checks `one_ongoing_transaction_per_transactional_id`, `fenced_epoch_never_writes_again`,
//! `every_partition_gets_its_marker` and `reload_equals_live`, then drives each case to
//! quiescence and checks that every decided transaction got all its markers and every request
//! exactly one answer. The run counts the scenarios it reached (commits, fences, timeouts,
//! expirations, failed appends, resumed markers, …) and fails if any was reached fewer than 5
//! times; `WEIR_TXN_PROPTEST_CASES` sets the number of cases (default 1000).
//!
//! # Left out
//! - KIP-939 two-phase commit (InitProducerId v6 `Enable2Pc`, `KeepPreparedTxn`): it needs the
//!   external transaction manager's prepare/recover flow and 2PC authorization; the state has
//!   room for it (a prepared transaction is Ongoing with no timeout).
//! - ListTransactions v2's transactional id regular expression: it would pull in a regex
//!   engine; the broker can filter the listing's ids itself.
//! - Marker delivery retries: the broker retries a marker that failed retriably and reports a
//!   deleted partition as written, as Kafka's marker channel manager does; the coordinator
//!   resends every marker of a loaded PrepareCommit/PrepareAbort.
//! - Authorization, request versions and wire errors for old clients are the broker's:
//!   [`Error::code_for_version`] maps PRODUCER_FENCED for clients that predate it.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod admin;
mod config;
mod coordinator;
mod error;
mod partition;
mod producer_id;
pub mod record;
mod requests;
mod transition;
mod types;

pub use config::Config;
pub use coordinator::Coordinator;
pub use error::{Error, PersistError, Result};
pub use partition::partition_for;
pub use producer_id::{ProducerIdAllocator, ProducerIdBlock};
pub use requests::CONSUMER_OFFSETS_TOPIC;
pub use types::*;

#[cfg(test)]
mod invariants;
#[cfg(test)]
mod tests;
