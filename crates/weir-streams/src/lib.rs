//! Kafka Streams for Rust, on weir-client: **an increment** of issue 12.
//!
//! An application describes its processing as a *topology* with a typed DSL: streams and
//! tables read from topics through serdes, stateless operators (filter, map, flat_map,
//! branch, merge...), grouping and aggregation into tables held in state stores, time
//! (tumbling, hopping), sliding and session windows, suppression of intermediate window
//! results, stream-table, stream-stream, table-table and foreign-key joins, and writes to
//! topics, and user processors with state stores and punctuation (the processor API).
//! Keys changed before a stateful operator go through repartition topics, and
//! key-value stores log their updates to changelog topics. The topology is data plus
//! closures and does no I/O; the [`TopologyTestDriver`] runs it in-process for tests, and
//! [`KafkaStreams`] runs it against a Kafka-compatible cluster, one task per input
//! partition, shared by the instances of an application and restored from the changelogs
//! when tasks move; with a state directory, each task keeps a local copy of its stores in
//! redb, so a restart reads only the changelog past its checkpoint, and so do the global
//! tables, whose topics a restart reads only past their checkpoints.
//!
//! The crate needs Rust 1.90 (redb 5's minimum), above the workspace's 1.85.
//!
//! ```
//! use weir_streams::{Grouped, StreamsBuilder, StringSerde, I64Serde, Nullable,
//!     TopologyTestDriver, TestInputTopic, TestOutputTopic, TestRecord};
//!
//! # fn main() -> Result<(), weir_streams::Error> {
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream("words", StringSerde, StringSerde)
//!     .flat_map_values(|line: String| line.split(' ').map(str::to_string).collect::<Vec<_>>())
//!     // The new key needs a serde: the records go through a repartition topic.
//!     .group_by_with(|_, word| word.clone(), Grouped::with(StringSerde, StringSerde))
//!     .count()
//!     .to_stream()
//!     .to("word-counts", StringSerde, Nullable(I64Serde));
//! let mut driver = TopologyTestDriver::new(builder.build()?);
//! let input = TestInputTopic::new("words", StringSerde, StringSerde);
//! let output = TestOutputTopic::new("word-counts", StringSerde, I64Serde);
//! driver.pipe_input(&input, &"k".to_string(), &"a b a".to_string(), 1_000)?;
//! assert_eq!(driver.read_output(&output)?, vec![
//!     TestRecord::new("a".to_string(), 1, 1_000),
//!     TestRecord::new("b".to_string(), 1, 1_000),
//!     TestRecord::new("a".to_string(), 2, 1_000),
//! ]);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`serdes`]: the [`Serde`] trait and Kafka-compatible serdes (bytes, strings, big-endian
//!   integers, JSON, [`Nullable`], time- and session-windowed keys).
//! - `kstream`: the DSL. [`StreamsBuilder`] → [`KStream`] → [`KGroupedStream`] →
//!   [`TimeWindowedKStream`] / [`SessionWindowedKStream`] → [`KTable`]; stream joins;
//!   [`Grouped`], [`Materialized`], [`Repartitioned`]; repartition topics.
//! - `ktable`: [`KTable`] operators, table-table joins, [`Suppressed`]; `grouped_table`:
//!   [`KTable::group_by`] → [`KGroupedTable`] (count, reduce, aggregate with a subtractor);
//!   `fk_join`: the foreign-key join and [`TableJoined`]; `partitioner`:
//!   [`StreamPartitioner`] and [`Produced`].
//! - `window`, `windowed`: window definitions ([`TimeWindows`], [`SlidingWindows`],
//!   [`SessionWindows`], [`JoinWindows`]) and the windowed aggregations; `join`: the
//!   stream-stream join.
//! - `topology`: the graph the DSL builds. Each operator registers a closure on its parent's
//!   node; a record flows depth-first from the source that deserialized it through every
//!   operator to the sinks, which serialize it into output records. A [`Topology`] is one
//!   task: its processors, its stores, its stream time; it lists its internal topics and
//!   co-partition groups.
//! - `store`: key-value stores, in memory or persistent ([`ReadOnlyKeyValueStore`] to read them), their
//!   changelog records and restoration; `window_store`: the views of windowed aggregations'
//!   stores by time range, [`ReadOnlyWindowStore`] and [`ReadOnlySessionStore`].
//! - `state`: a task's local state under [`StreamsConfig::state_dir`]: one redb database
//!   with the stores' latest changelog records and the changelog checkpoints, and the locks
//!   of the state directories; the global tables' local copy is one more such database.
//! - [`processor`]: the processor API: [`Processor`]s in the graph with
//!   [`KStream::process`], their [`ProcessorContext`], user stores ([`Stores`],
//!   [`KeyValueStore`], [`WindowStore`], [`SessionStore`]) and punctuation.
//! - `driver`: the [`TopologyTestDriver`].
//! - `assignor`: the group's task assignor, sticky to the instance that ran a task or holds
//!   its state; it holds a task back on a caught-up instance while a warm-up replica catches
//!   up where balance would move it (KIP-441), and places the standby replicas.
//! - `runtime`: [`KafkaStreams`], the topology against a cluster through weir-client: one
//!   task per input partition built by a [`TopologyFactory`], created (and restored) on
//!   assignment and dropped on revocation; consume a batch, process it, produce its outputs,
//!   wait for their acknowledgements, commit its input offsets (at least once); the
//!   instance's global state: the global tables' topics read outside the group into one
//!   store per table that every task looks up.
//!
//! # Semantics
//! These follow Kafka Streams' processors (3.x) with record caching off, so every update is
//! visible, as in Kafka's `TopologyTestDriver` with `statestore.cache.max.bytes=0`.
//! - **Record order.** [`KafkaStreams`] takes every record a fetch brought in with the
//!   one it waited for and processes them in timestamp order across partitions, each
//!   partition's own order kept (Kafka's `PartitionGroup`: the partition whose next record
//!   is oldest goes first), so a join sees a table update before the stream records that
//!   follow it in time. Before a task goes on without an input partition that has nothing
//!   buffered it may wait for it ([`StreamsConfig::max_task_idle_ms`], with KIP-695's fetch
//!   lag, [`Consumer::current_lag`](weir_client::consumer::Consumer::current_lag)): with 0,
//!   the default, it waits with no time bound while the consumer knows the broker holds
//!   more of that partition or has had no fetch response for it yet, and goes on once it is
//!   known to be caught up, so inputs written before the start are processed in time order
//!   however the fetches cut them; above 0 it also waits that long after the partition is
//!   caught up (counted from the first time it is found caught up and empty, so an
//!   always-empty partition is waited for once); -1 never waits.
//! - **Time.** Each record's event time comes from a [`TimestampExtractor`] (by default the
//!   Kafka record's timestamp), which is given the partition time of the record's partition,
//!   as Kafka's; a negative one skips the record. Stream time is the largest
//!   event time the task has processed: the largest of its input partitions' partition
//!   times (each the largest event time processed from that partition). [`KafkaStreams`]
//!   commits each input partition's offset (user and repartition topics; not a global
//!   table's) with its partition time as the commit's metadata, in Kafka Streams' format:
//!   base64 of the version byte 2 and the time as 8 big-endian bytes, with none of the
//!   processor metadata version 2 allows after it (Kafka Streams writes none when its
//!   processors have none); a partition with no valid timestamp yet gets empty metadata.
//!   A task created after a restart or a rebalance reads that metadata (versions 1 and 2,
//!   processor metadata skipped), resumes each partition time, and starts its stream time
//!   at their largest, as Kafka's `StreamTask` does (stream-time punctuations follow it).
//!   Windowed aggregations close windows by their own observed stream time, the largest
//!   timestamp of the records that reached them, as Kafka's processors do: a task reads a
//!   rekeyed stream's source topic ahead of the repartitioned copies the aggregation sees,
//!   which the task's stream time would make late; like Kafka's, that time starts over in a
//!   new task, where a window that expired from the store (retention) starts again empty.
//!   Metadata it cannot read (another format, an unknown
//!   version) or a failed fetch is logged and ignored: that partition's time, or the task's
//!   stream time, starts unknown. The two read each other's commits, so an application can
//!   move between Kafka Streams and this runtime keeping its stream time. Operators keep
//!   the input record's timestamp; aggregates carry the largest timestamp that went into
//!   them; joins the larger of the two sides'.
//! - **Tables.** Every update is forwarded downstream at once. [`StreamsBuilder::table`]
//!   materializes a topic: a null value (`None` of the value serde) deletes the key and is
//!   forwarded as a tombstone, a record without a key is skipped. [`KTable::to_stream`] gives
//!   `None` for a tombstone (Kafka's null). [`KTable::filter`] turns an update that fails the
//!   predicate into a tombstone (Kafka without old values); [`KTable::map_values`] keeps
//!   tombstones. Table updates carry the value they replace, so left and outer table joins
//!   propagate deletions as Kafka does (it enables old values for them).
//! - **Time windows.** [`TimeWindows`] are aligned to the epoch, `[start, end)`; hopping
//!   windows (`advance_by`) start at every multiple of the advance. A window closes when
//!   stream time reaches its end plus grace; a record is dropped, and counted in
//!   [`TaskMetrics::dropped_late`], once per closed window it falls in (Kafka's
//!   `KStreamWindowAggregate`). The default grace is zero (`ofSizeWithNoGrace`).
//! - **Sliding windows.** [`SlidingWindows`] follow Kafka's `KStreamSlidingWindowAggregate`:
//!   windows `[start, start + timeDifference]` with both ends inclusive, created as a record's
//!   left window `[t - d, t]` and, once a later record falls in it, its right window
//!   `[t + 1, t + 1 + d]`; records before `d` share `[0, d]`. A record whose right window would
//!   be closed (`t + 1 + d <= stream time - grace`) is dropped; otherwise it is dropped per
//!   closed window (end before stream time minus grace). Existing windows are updated latest
//!   start first, as Kafka's backward store iteration does. The window store drops windows
//!   starting `2d + grace` or more before the latest window start, as Kafka's does.
//! - **Session windows.** [`SessionWindows`] follow `KStreamSessionWindowAggregate`: a
//!   record joins every session of its key ending at or after `t - gap` and starting at or
//!   before `t + gap`; their aggregates merge (Kafka's `Merger`, in the order the sessions
//!   end) and every merged session is deleted with a tombstone (timestamp: its end) before
//!   the new session `[min start, max end]` is forwarded (timestamp: its end). A merged
//!   session ending before stream time minus grace minus the gap is dropped (Kafka 3.3+); the store drops sessions
//!   ending `gap + grace` or more before the latest session end. [`SessionWindowedSerde`]
//!   writes the key, then end, then start, as Kafka's.
//! - **Retention and window queries.** A window store keeps a window until its start is at
//!   or before the latest window start it was given minus its retention (sessions: their
//!   end, from the latest end), as Kafka's window stores: by default size plus grace for
//!   time windows (Kafka 4's default; 3.x kept a day); `2 * timeDifference + grace` for
//!   sliding windows;
//!   gap plus grace for sessions. [`Materialized::with_retention`] sets it, and a retention
//!   under what the windows need is refused at build (Kafka's check). Expired windows are not
//!   queried; the store drops them each time its latest time moves on by a retention period
//!   (Kafka drops whole segments), from the task's local state too, without logging them
//!   (as Kafka's dropped segments are not). [`ReadOnlyWindowStore`] (Kafka's
//!   `ReadOnlyWindowStore`: `fetch`, `fetch_range`, `backward_fetch`, `fetch_key_range`,
//!   `fetch_keys` with key ranges open at either end as Kafka's null bounds, `fetch_all`,
//!   `all`) queries by window start, bounds inclusive, one key oldest first, several keys by
//!   start then key (Kafka's in-memory window store's order); [`ReadOnlySessionStore`] gives
//!   a key's sessions by end then start, `find_sessions` those ending at or after a time and
//!   starting at or before another, and `fetch_keys` / `find_sessions_of_keys` the same
//!   over a key range (by end, then key, then start). [`ReadOnlyKeyValueStore::range_by`]
//!   and `reverse_range_by` take key ranges open at either end too. Both come from the
//!   test driver and from [`KafkaStreams`] (over the instance's tasks).
//! - **Suppress.** [`KTable::suppress`] with [`Suppressed::until_window_closes`] keeps the
//!   latest update per windowed key in an unbounded buffer and emits it once its window end
//!   is at or before the suppression's own stream time (from the records reaching it) minus
//!   the grace of the windowed aggregation upstream (for sessions, gap plus grace, as
//!   Kafka's), in window-end then key order; tombstones are never emitted. Without a
//!   windowed aggregation upstream the topology is refused, naming the suppress node.
//! - **Joins.** Stream-table ([`KStream::join_table`], [`KStream::left_join_table`]): each
//!   stream record looks up the table's current value; table updates emit nothing.
//!   Stream-global table ([`KStream::join_global`], [`KStream::left_join_global`]): the same,
//!   with the lookup key computed from the record; a [`GlobalKTable`]'s updates fill its
//!   store only (no output, no stream time), as Kafka's global thread does (*Global
//!   tables*).
//!   Stream-stream ([`KStream::join`], [`KStream::left_join`], [`KStream::outer_join`] with
//!   [`JoinWindows`]): a left record at `t` joins right records in `[t - before, t + after]`
//!   (bounds inclusive); both sides are buffered in window stores kept for
//!   `before + after + grace`; a left/outer record without a partner is emitted with the
//!   null side once stream time (over both sides) passes `t + after + grace` (right records:
//!   `t + before + grace`), or at once when it arrives after its window closed (Kafka 3.1+,
//!   with the emit interval at zero; at equal timestamps left records go first). A record
//!   older than its side's latest timestamp minus the retention is not buffered (it still
//!   joins what it finds). Table-table ([`KTable::join`], [`KTable::left_join`],
//!   [`KTable::outer_join`]): an update on either side emits the joined value, or a
//!   tombstone when a needed side is deleted, as Kafka's `KTableKTable*Join`. Foreign-key
//!   ([`KTable::join_foreign_key`], [`KTable::left_join_foreign_key`]): Kafka's design
//!   (KIP-213), so the two tables need no co-partitioning. A left row's update sends
//!   subscriptions with Kafka's instructions, keyed by foreign key, to
//!   `KTABLE-FK-JOIN-SUBSCRIPTION-REGISTRATION-<n>-topic` (created with the right table's
//!   partition count, so the producer's partitioner sends each to the task of its right
//!   row); that task keeps them in `KTABLE-FK-JOIN-SUBSCRIPTION-STATE-STORE-<n>` (logged,
//!   keys in Kafka's `CombinedKey` format) and answers, as it does for every subscriber when
//!   a right row changes, on `KTABLE-FK-JOIN-SUBSCRIPTION-RESPONSE-<n>-topic`, on the
//!   partition of the left row's task; that task joins the answer with the row's current
//!   value, or drops it when the row has since moved to another foreign key. Records are in
//!   Kafka's `SubscriptionWrapper`/`SubscriptionResponseWrapper` formats; the hash in them is
//!   of the serialized foreign key, not of the whole left value (so a left table without a
//!   value serde can be joined; an update that keeps its foreign key may be joined twice
//!   while answers are in flight, to the same final result). The left task also keeps, per
//!   row, the foreign key it subscribed to and the last answer it accepted
//!   (`KTABLE-FK-JOIN-SUBSCRIBER-STATE-STORE-<n>`, logged; Kafka reads the row's old value,
//!   which tables computed by joins do not forward here), so that chained foreign-key joins
//!   and lookups of the result work. The join needs this table's key serde and the other
//!   table's key and value serdes, or [`StreamsBuilder::build`] refuses it. Results carry
//!   the answer's timestamp: the left record's, or the right row's when later. The extractor
//!   may return an `Option` of the key: a `None` (Java's null) foreign key joins nothing, as
//!   Kafka 4.4 does: the inner join treats the row as deleted (a tombstone for the result it
//!   had), the left join unsubscribes it and emits `joiner(value, None)` at once (Kafka sends
//!   it through the topics, to be answered with nothing; the results are the same).
//! - **Bad input.** A key or value that does not deserialize goes to the
//!   [`DeserializationExceptionHandler`] of [`StreamsConfig`] (or of the test driver): by
//!   default processing stops with [`Error::Deserialize`] naming topic, partition and offset
//!   (Kafka's `LogAndFailExceptionHandler`); `LogAndContinue` logs and skips the record;
//!   `DeadLetterQueue(topic)` also writes its raw key, value and timestamp to `topic` (the
//!   error goes to the log, not to headers as KIP-1034's does). Skipped records are counted
//!   in [`TaskMetrics::dropped_deserialization_errors`]. Records without a key need a
//!   [`Nullable`] key serde.
//! - **Nulls.** Keys and values are typed, so a null is the `None` of a [`Nullable`] serde
//!   and aggregations and joins treat it like any other value; Kafka Streams' aggregations
//!   and stream joins skip records with a null key or value. Filter them out first for
//!   Kafka's behaviour.
//! - **Serdes.** A stream carries the serdes it was read with while its key and value types
//!   stay (Kafka's serde inheritance): `filter`, `peek`, `merge`, branches, `group_by_key`
//!   keep both; `map_values`/`flat_map_values` and the stream-table joins drop the value
//!   serde, `select_key` the key serde, `map`/`flat_map` both. [`Grouped`] (for
//!   [`KStream::group_by_with`], [`KStream::group_by_key_with`]) and [`Materialized`] (for
//!   [`KGroupedStream::count_with`], `reduce_with`, `aggregate_with`) give or override them;
//!   `count`'s value serde is [`I64Serde`]. There are no default serdes in a config: a
//!   repartition topic or a changelog without its serdes refuses [`StreamsBuilder::build`],
//!   naming the node and the missing serde.
//! - **Repartitioning.** When the key was changed (`select_key`, `map`, `flat_map`,
//!   `group_by` with a selector) before an aggregation, a stream-stream join or a
//!   stream-table join, the records go through an internal topic: `<store>-repartition` for
//!   an aggregation (Kafka's `KSTREAM-AGGREGATE-STATE-STORE-0000000003-repartition`),
//!   `<name>-repartition` with [`Grouped::named`], or a generated
//!   `KSTREAM-REPARTITION-<n>-repartition` (joins, [`KStream::repartition_with`]). The
//!   topology names internal topics without the application id; [`KafkaStreams`] writes and
//!   reads `<application.id>-<name>`. A sink writes the serialized record with its
//!   timestamp, partitioned by murmur2 of the key, and a source reads it back (not counted in
//!   `process_total` again). The test driver pipes records written to a repartition topic
//!   back into the topology at once, in the order written, as Kafka's driver does.
//! - **Changelogs.** Every key-value store of an aggregation (`count`, `reduce`,
//!   `aggregate`, also per time window, tumbling, hopping or sliding, and per session, whose
//!   changelog keys are Kafka's window and session store key formats: the key, the 8-byte
//!   window start and a 4-byte sequence number (0), or the key then the session's end and
//!   start) and of a table read from a topic writes
//!   each update to
//!   `<store>-changelog` (compacted), on the task's partition, as Kafka's timestamped stores
//!   log: the serialized key, the serialized value alone, and the value's timestamp as the
//!   record's (a session store's records carry the timestamp of the record being processed,
//!   as Kafka's, whose session store keeps none); a deleted key writes a tombstone. Inside
//!   a task and in its local state a value keeps its 8-byte big-endian timestamp in front,
//!   as in Kafka's RocksDB timestamped stores; the runtime drops it when it produces and
//!   puts the record's timestamp back when it restores, so Kafka Streams and this runtime
//!   restore each other's changelogs (`benches/scripts/streams.py compare` checks the
//!   changelogs byte for byte and hands an application over between the two). These records are outputs of the task like any other,
//!   so the at-least-once commit waits for them. A task created by the runtime first reads
//!   its changelog partitions from the start to their end into its stores (tombstones delete
//!   the key), logging store, partition, records restored and of how many, then processes.
//!   With a state directory a task reads only the changelog past its local state (*State*).
//!   Windows and sessions dropped by retention are not logged (as Kafka's dropped segments).
//!   Stores of the processor API are logged too (*Processor API*). The two window stores of
//!   a stream-stream join, `KSTREAM-JOINTHIS-<n>-store` and `KSTREAM-JOINOTHER-<n>-store`
//!   (Kafka's names), log each buffered record: Kafka's window-store key with duplicates
//!   retained (the serialized key, the 8-byte timestamp, a 4-byte sequence number) and the
//!   serialized value alone; they are logged when the serdes of the key and both values are
//!   known (not after a `map_values` that dropped one). A restored left or outer join
//!   rebuilds from them the records still waiting for a partner (*Not built yet*). The
//!   buffer of
//!   [`KTable::suppress`] logs to `KTABLE-SUPPRESS-STATE-STORE-<n>-changelog`: the windowed
//!   key, and Kafka's version-3 buffer value (the input record's timestamp, offset, topic and
//!   partition, no headers; the prior, old and new values, size-prefixed, `-1` for null, `-2`
//!   for an old value equal to the prior; the buffer time, the window end) with the header
//!   `v` = 3 that tells Kafka the version ([`KafkaStreams`] writes it; the test driver's
//!   records carry no headers), a tombstone when a window's result is emitted. A task's stream
//!   time moves with it through the offset commits (*Time*). The test driver keeps changelog
//!   records as outputs, readable under `<store>-changelog`.
//! - **Tasks.** [`KafkaStreams::new`] takes a [`TopologyFactory`] and builds one topology
//!   per task. Task `p` processes partition `p` of every source topic (repartition topics
//!   included) and owns partition `p` of every changelog: coarser than Kafka's tasks per
//!   (sub-topology, partition), since every task holds the whole topology. The number of
//!   tasks is the largest partition count of the source topics; internal topics are created
//!   with that many partitions, or with the count of the user topics they must be
//!   co-partitioned with (a repartition topic joined with a table's topic, a foreign-key
//!   join's registration topic), as Kafka does (repartition: `cleanup.policy=delete`,
//!   `retention.ms=-1` and 50 MB segments, as Kafka's, their records deleted up to the
//!   committed offsets every [`StreamsConfig::repartition_purge_interval`]; changelogs:
//!   `compact`), if missing, and one that exists with another count is refused. Instances of
//!   one application share the tasks through the group `application.id` with the streams
//!   assignor (protocol `weir-streams`, a weir-client custom assignor): each instance's
//!   subscription says which tasks it ran last and which it has local state for, and the
//!   leader keeps a task with its last owner, else an instance with its state, else fills in
//!   task order, balanced (counts differ by at most one), giving one instance partition N of
//!   every subscribed topic. Instances of an earlier version, which proposed `range`, cannot
//!   join the same group: stop them all before starting this one. Topics that must be co-partitioned (both sides of a join, the topics feeding
//!   one store; [`Topology::copartition_groups`]) must have equal partition counts: the
//!   runtime refuses to start otherwise, naming the node and each topic's count. A global
//!   table's topic makes no task and is not in the group's subscription (*Global tables*).
//! - **Standby replicas.** With [`StreamsConfig::num_standby_replicas`] (Kafka's
//!   `num.standby.replicas`, default 0) above 0, the leader also gives each task up to that
//!   many standbys on other instances (never the task's own, at most one per instance,
//!   first where its local state is, then the least loaded), sent in each member's
//!   assignment user data. An instance builds each standby's topology and feeds its stores
//!   the task's changelog records with a consumer outside the group, read in the run loop
//!   (with a state dir, into the task's local state too, at each commit); it reports its
//!   standbys as tasks with local state, so a task whose instance leaves or crashes moves to
//!   one that kept it warm, where the standby is promoted: the task keeps the standby's
//!   stores and restores only the changelog past what the standby applied.
//!   [`KafkaStreams::standby_tasks`] lists them and [`TaskMetrics::standby_applied`] counts
//!   what they applied. Every instance of an application should use the same value: only
//!   the leader's counts.
//! - **Warm-up replicas** (KIP-441). Each instance also reports its lag per task it has
//!   state for (0 for the tasks it ran; a standby's, from its changelog consumer's fetch
//!   lag; at start, a task directory's, from its checkpoints and the changelogs' end
//!   offsets). When balance would move a task to an instance whose lag on it is above
//!   [`StreamsConfig::acceptable_recovery_lag`] (default 10000) or unknown, while another
//!   instance is within it, the task stays on the most caught-up instance and the other
//!   gets a warm-up replica, run as a standby ([`KafkaStreams::warmup_tasks`]); at most
//!   [`StreamsConfig::max_warmup_replicas`] (default 2) tasks per assignment, the others
//!   move at once. While an assignment has warm-ups, the instances rejoin after
//!   [`StreamsConfig::probing_rebalance_interval`] (default 10 minutes; a *probing
//!   rebalance*, through weir-client's
//!   [`Consumer::enforce_rebalance`](weir_client::consumer::Consumer::enforce_rebalance)),
//!   and the tasks whose warm-ups caught up move then, restoring only the changelog past
//!   them. Balance is broken only by tasks so held back. A task no instance is caught up on
//!   is placed as balance says, and a topology without changelogs has no warm-ups.
//! - **Global tables.** As Kafka's `GlobalStreamThread` and `GlobalStateManager`: every
//!   instance reads every partition of each [`GlobalKTable`]'s topic with a consumer of its
//!   own, outside the group (manual assignment), into one store per table that all the
//!   instance's tasks look up, so a stream-global table join sees the whole table on every
//!   instance, whatever partitions its tasks have, and a task created later sees what was
//!   read before it. [`KafkaStreams::new`] first reads each global topic from its start to
//!   the end offsets it has then (logging per topic the records to read, progress every
//!   10,000 records, and the records read), before any task exists; a topic that stops
//!   short of its end for [`StreamsConfig::restore_timeout`] fails with
//!   [`Error::GlobalBootstrap`]. The run loop then goes on reading it between the tasks'
//!   records, so an update reaches the joins processed after it is read (there is no
//!   ordering by timestamp with the tasks' records, as in Kafka, whose global thread runs
//!   on its own). The topics take no part in the assignment or in co-partitioning, and no
//!   offsets are committed for them: without a state dir each start reads them again from
//!   their beginning; with one, the global local copy (*State*) holds where it is. A record that does not deserialize goes to the deserialization
//!   exception handler; with the dead-letter queue, a global table's record goes to it as
//!   a task's does (Kafka's KIP-1295), sent with the run loop's batch (those the bootstrap
//!   found, with the first batch) and awaited by its commit. [`KafkaStreams::key_value_store`] on a global table's store gives the
//!   instance's whole copy. The [`TopologyTestDriver`] runs one task, which reads the
//!   global topics piped to it itself.
//! - **At least once.** [`KafkaStreams`] commits a batch's input offsets only after every
//!   output of the batch (changelog records included) is acknowledged, so no input is lost;
//!   the records after the last commit run again after a crash or a rebalance that moves
//!   their task. Their outputs are written twice, and since the changelog already holds
//!   their updates, the restored aggregates count them twice: after a crash, a count exceeds
//!   the truth by at most the records (input or repartitioned) processed but not committed
//!   when the instance died. A clean close commits everything first, so a handover is exact.
//!   A task whose partitions are revoked and handed back in the same rebalance is kept, and
//!   skips the records it already processed that come again; after several rebalances in
//!   one poll it is rebuilt from its changelog. An instance that lost its membership but
//!   still runs (a zombie) may write to a changelog partition another instance now owns:
//!   only exactly once rules that out.
//! - **Exactly once.** With [`StreamsConfig::processing_guarantee`] set to
//!   [`ProcessingGuarantee::ExactlyOnceV2`] (Kafka's `exactly_once_v2`, KIP-447), the instance's
//!   producer is transactional (`<application.id>-<process>-1`, a 10 s transaction timeout as
//!   Kafka Streams sets) and a batch's outputs, changelog records and input offsets
//!   (`send_offsets_to_transaction` with the consumer's group metadata, which fences a member
//!   a rebalance left behind) are one transaction, begun by the batch's first output and
//!   committed at its end. Every consumer of the instance (group, restores, standbys, global
//!   tables) reads `read_committed`, and the group consumer's offset fetches ask for stable
//!   offsets. The local state is written after the commit, so it never holds what an abort
//!   discards. Kafka Streams commits before a rebalance takes partitions away; this
//!   consumer's rebalance callbacks cannot wait for a commit, so a rebalance during a batch
//!   that processed records aborts it instead: every task is closed dirty and created again
//!   from its local state and changelogs, and the partitions, given back by the eager
//!   rebalance, are read again from the committed offsets. A refused commit does the same,
//!   and rejoins the group to read the partitions again. A crashed instance's transaction
//!   stays open until its timeout: its successor's restore and offset fetch wait for it.
//!   Restores read changelogs to their high watermark, not the last stable offset. Tests:
//!   `tests/sigkill.rs` (two SIGKILLs, each key's counts read `read_committed` are 1, 2, 3...
//!   with none repeated; the at-least-once runtime fails it) and `tests/kafka.rs` (an
//!   instance joins and one leaves while records come).
//! - **State.** With [`StreamsConfig::state_dir`] (Kafka's `state.dir`; default none: state
//!   only in memory), task `p` keeps `<state_dir>/<application.id>/<p>/state.redb`: per
//!   store, the latest changelog record per key (the changelog's exact bytes; a tombstone
//!   removes the key), and per changelog partition a checkpoint, the offset after the last
//!   record held (Kafka's `.checkpoint` file). At each commit, once every output is
//!   acknowledged and before the input offsets are committed, the batch's changelog records
//!   and their new checkpoints go into the task's database in one write transaction (redb's
//!   `Durability::None`, made durable every 10,000 records, at a clean close and when the
//!   task is dropped on revocation: after a kill the database is at an earlier commit whose
//!   records and checkpoints agree). A created task loads the local records into its stores,
//!   then restores each changelog from its checkpoint to the end (records it reads go into
//!   the database too), counting both in [`TaskMetrics::restored_from_local_state`] and
//!   [`TaskMetrics::restored_from_changelog`], and the time in
//!   [`TaskMetrics::restore_time_ms`]. A database that does not open (corrupt) or a
//!   checkpoint outside its changelog's offsets (the topic was deleted or recreated) is
//!   logged, wiped, and the whole changelog restored, as Kafka does. One instance per state
//!   directory: [`KafkaStreams::new`] locks `<state_dir>/<application.id>` and refuses a
//!   second instance with [`Error::StateLocked`]; each task directory is locked too (a task
//!   waits up to `restore_timeout` for it). The locks are advisory file locks the OS drops
//!   with their process, so a crash leaves none behind. Kafka's state cleaner deletes, under
//!   their locks, the task directories of tasks the instance does not run that have not
//!   changed for [`StreamsConfig::state_cleanup_delay`] (default 10 minutes; it first runs
//!   once the instance runs tasks, then every delay); [`KafkaStreams::cleanup`] (Kafka's
//!   `cleanUp`) deletes every task directory of the application before the instance runs,
//!   and is refused with [`Error::IllegalState`] once it runs tasks. The key-value stores
//!   with a changelog (tables, aggregations without windows, the processor API's
//!   [`Stores::persistent_key_value_store`]s) are then *persistent*, served from the task's
//!   database so that they can outgrow memory: each keeps in memory the entries updated since
//!   the last commit and at most [`StreamsConfig::store_cache_max_entries`] others (least
//!   recently used evicted; [`TaskMetrics::persistent_entries_in_memory`] counts them), reads
//!   the rest from the database, and a created task loads nothing for it (its entries count
//!   in `restored_from_local_state`). A failed read stops the task with its error. Window and
//!   session stores, join and suppression buffers and in-memory stores keep every entry in
//!   memory; for them the local copy makes restarts cheap. The global tables keep one too, Kafka's global state directory:
//!   `<state_dir>/<application.id>/global/state.redb`, the same format, with per global
//!   topic the latest record per key (the topic's key and value bytes, the value after its
//!   8-byte big-endian timestamp, which the store keeps too) and per topic partition a
//!   checkpoint (named `<topic>-<partition>`). [`KafkaStreams::new`] loads it, then reads
//!   each global partition from its checkpoint to its end; what it reads, and what the run
//!   loop follows, is written at each commit as the tasks' state is (a global record starts
//!   the batch's commit clock). The counters count it with the tasks'. A checkpoint outside
//!   its partition's offsets (the topic was deleted, recreated or truncated), or of a
//!   partition the topic no longer has, is logged and wipes the copy, which the bootstrap
//!   then rebuilds from the beginning. The state cleaner leaves the `global` directory (it
//!   is no task's); [`KafkaStreams::cleanup`] deletes it, after which the instance keeps its
//!   global stores in memory only, its next start bootstrapping them in full.
//! - **Processor API.** [`KStream::process`] and [`KStream::process_values`] (a
//!   [`FixedKeyProcessor`], which cannot change keys) put a user [`Processor`] in the graph,
//!   made by its supplier when the task starts; `init` runs before the task's first record or
//!   punctuation, `close` when it closes. Records it forwards go through the operators
//!   downstream before `forward` returns; it gives each record its timestamp (the input's, or
//!   any other). Stores added with [`StreamsBuilder::add_state_store`] are used by the
//!   processors that name them (a name that was not added is refused at build, naming the
//!   processor; a store not named cannot be used) and read like DSL stores through
//!   `key_value_store`. [`ProcessorContext::schedule`] follows Kafka's `PunctuationQueue`:
//!   stream-time punctuators are aligned to 0 and fire after a record moves stream time to or
//!   past their next time, once however many intervals it skipped, the next time then being
//!   the first multiple of the interval after stream time (so an equal or older timestamp
//!   fires nothing); wall-clock punctuators start one interval after they are scheduled and
//!   fire from the system clock in [`KafkaStreams`] (its run loop sleeps until the next one
//!   is due; their outputs join the batch being committed) and from a mocked clock in the
//!   test driver ([`TopologyTestDriver::advance_wall_clock_time`]). A punctuator gets the
//!   punctuation's time; records it forwards have no [`RecordMetadata`](processor::RecordMetadata).
//!   Punctuators due at the same time fire in the order they were scheduled. A
//!   [`Cancellable`] stops its punctuator, also from inside it. Plain key-value stores keep
//!   no timestamps (`get_with_timestamp` gives `-1`). Stores added with
//!   [`StreamsBuilder::add_state_store`] are logged by default (Kafka's `withLoggingEnabled`)
//!   to `<store>-changelog` in Kafka's plain key-value format: the serialized key and the
//!   serialized value alone (no timestamp prefix, as a plain store has none), a tombstone for
//!   a delete, with the timestamp of the record or punctuation being processed. A write is
//!   logged when the processor call that made it returns; a key or value that does not
//!   serialize fails that call. A created task restores them like the DSL's stores;
//!   [`KeyValueStoreBuilder::with_logging_disabled`](processor::KeyValueStoreBuilder::with_logging_disabled)
//!   keeps a store out of any changelog (it starts empty in every new task). Window and
//!   session stores ([`Stores::window_store_builder`], [`Stores::session_store_builder`],
//!   opened with [`ProcessorContext::window_store`] and [`ProcessorContext::session_store`]
//!   as a [`WindowStore`] or [`SessionStore`]) are the DSL's windowed stores written through
//!   a handle: the same retention (a put whose window start, or session end, is at or before
//!   the store's latest one minus the retention is dropped, counted in `dropped_late`;
//!   expired windows are swept), local
//!   state and restore, logged in Kafka's window store key format (key, start, sequence
//!   number 0: the DSL's bytes) or session store key format (key, end, start) with the value
//!   alone. A put the store drops as expired is logged all the same, as Kafka's change
//!   logging logs it. `retain_duplicates` is not supported (refused at build).
//! - **Records.** Headers are not carried from inputs to outputs; outputs are partitioned by
//!   the producer's default partitioner on the serialized key (murmur2, as Kafka's), or by a
//!   [`StreamPartitioner`] given in [`Produced`] ([`KStream::to_with`]), which may drop a
//!   record or multicast it. A foreign-key join takes a [`TableJoined`]: a name for its
//!   topics and stores, partitioners for tables partitioned their own way. A repartition
//!   topic has no partitioner (Kafka's `Repartitioned.streamPartitioner`).
//!
//! # Not built yet
//! Kafka Streams has more; this crate leaves out:
//! - sub-topologies: a task holds the whole topology, so a repartition topic's partition
//!   count is the number of tasks unless it must be co-partitioned with a user topic
//!   (Kafka: the largest partition count of the upstream sub-topology's sources); no
//!   topology optimization
//!   (merging repartition topics, source topics as changelogs);
//! - Kafka's `global.consumer.` settings (the global
//!   consumer takes the instance's client settings). A partitioner for repartition topics.
//!   `Materialized`
//!   for tables from topics and for filter/map_values/join results (their store names are
//!   generated or absent), versioned tables, `suppress` with a time limit or a bounded
//!   buffer;
//! - stream-stream join buffers and suppression buffers larger than memory: they stay in
//!   memory while their task runs (their join window or grace period bounds them; Kafka's
//!   suppression buffer is in memory too), the local redb copy (*State*) only serving
//!   restarts; the changelog of the records a left or outer stream-stream
//!   join holds until their window closes (Kafka's shared outer-join store): a restored task
//!   rebuilds them from the two logged buffers instead (the records whose window is still
//!   open at the latest buffered timestamp and that nothing buffered on the other side
//!   joins), which, with a grace period, may emit again a record that arrived after its
//!   window's end and was emitted at once before the handover; the processor metadata of
//!   Kafka's offset-commit metadata version 2 (the last window a windowed aggregation with
//!   `EmitStrategy.onWindowClose` emitted, which this port does not have); Kafka's
//!   `prefixScan`; windowed stores drop expired windows a retention period apart rather than by
//!   Kafka's segment interval (`max(retention / 2, 60 s)`), and the key-value view of a windowed store
//!   ([`TopologyTestDriver::key_value_store`]) still shows expired windows until then; the
//!   state cleaner runs in the run loop after a commit, not on a thread of its own, so an
//!   instance blocked elsewhere does not clean;
//! - the rest of Kafka's `StreamsPartitionAssignor` (cooperative rebalancing, rack
//!   awareness, the leader computing lags from offset sums and end offsets it looks up:
//!   here each instance reports its own lag, and a task it neither runs nor keeps a standby
//!   of has one only until the instance's first assignment): the streams
//!   assignor is sticky, lag-aware and places warm-ups, but eager, so
//!   every partition is revoked at each rebalance, and the tasks it gives back are kept;
//! - in the processor API: `forward` to a named child,
//!   headers, window stores that retain duplicates, record caching of user stores,
//!   `Topology#addProcessor` (processors are placed with the DSL only), and
//!   the old `Transformer`s; interactive queries across instances;
//! - a production exception handler; exactly once's commit before a rebalance (a
//!   rebalance during a batch aborts it here), and Kafka's `exactly_once` (v1, one producer
//!   per task);
//! - Kafka's numbering of generated names: Kafka numbers every node, this crate only what it
//!   names, so beyond a topology's first store (`KSTREAM-AGGREGATE-STATE-STORE-0000000001`
//!   on both; a table read first is `<topic>-STATE-STORE-0000000000` in Kafka, `...01` here)
//!   generated store and topic names differ from Kafka Streams': an application handed over
//!   between the two needs its stores named (`Materialized::as_store`);
//! - [`KTable::group_by`] of a table that sends no old values (a join's or a suppression's
//!   result): refused when built, where Kafka materializes the table to get them;
//! - the old value a windowed aggregation sends for a new window: Kafka's is the
//!   initializer's value, this crate's none, which shows only in a suppression buffer's
//!   changelog (its prior and old values; an emission ignores both).
//!
//! Changelogs and local state written by versions before 7944257 (window store keys
//! without their sequence number, timestamped values with the timestamp in front) are not
//! read correctly by this version: reset such an application (`KafkaStreams::cleanup` and
//! its internal topics deleted) before upgrading.
//!
//! `benches/scripts/streams.py` runs topologies of this crate and of Apache Kafka Streams on
//! one input, compares their outputs record by record (CI runs it) and benchmarks both
//! (figures in `docs/benchmarks.md`).
//!
//! The DSL cannot build a cycle (an operator only ever feeds a node made after it), so the
//! topology needs no cycle check.

mod assignor;
mod driver;
mod error;
mod fk_join;
mod grouped_table;
mod join;
mod kstream;
mod ktable;
mod partition_group;
mod partition_time;
mod partitioner;
pub mod processor;
mod runtime;
pub mod serdes;
mod state;
mod store;
mod topology;
mod window;
mod window_store;
mod windowed;

pub use driver::{TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver};
pub use error::Error;
pub use fk_join::TableJoined;
pub use grouped_table::KGroupedTable;
pub use kstream::{
    BranchedKStream, Grouped, KGroupedStream, KStream, Materialized, Predicate, RecordTimestamp,
    Repartitioned, StreamsBuilder, TimestampExtractor,
};
pub use ktable::{GlobalKTable, KTable, Suppressed};
pub use partitioner::{Produced, StreamPartitioner};
pub use processor::{
    Cancellable, FixedKeyProcessor, FixedKeyProcessorContext, KeyValueStore, Processor,
    ProcessorContext, PunctuationType, SessionStore, StoreBuilder, Stores, WindowStore,
};
pub use runtime::{KafkaStreams, ProcessingGuarantee, StreamsConfig, TopologyFactory};
pub use serdes::{
    BytesSerde, I32Serde, I64Serde, JsonSerde, Nullable, Serde, SessionWindowedSerde, StringSerde,
    TimeWindowedSerde,
};
pub use store::ReadOnlyKeyValueStore;
pub use topology::{
    CopartitionGroup, Data, DeserializationExceptionHandler, InternalTopic, InternalTopicKind,
    RawRecord, TaskMetrics, Topology,
};
pub use window::{
    JoinWindows, SessionWindows, SlidingWindows, TimeWindows, TumblingWindows, Window, Windowed,
};
pub use window_store::{ReadOnlySessionStore, ReadOnlyWindowStore};
pub use windowed::{SessionWindowedKStream, TimeWindowedKStream};
