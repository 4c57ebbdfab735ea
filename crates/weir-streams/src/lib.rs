//! Kafka Streams for Rust, on weir-client: **a first increment** of issue 12.
//!
//! An application describes its processing as a *topology* with a typed DSL: streams read
//! from topics through serdes, stateless operators (filter, map, flat_map, branch, merge...),
//! grouping and aggregation into tables held in state stores, tumbling windows, and writes to
//! topics. The topology is data plus closures and does no I/O; the
//! [`TopologyTestDriver`] runs it in-process for tests, and [`KafkaStreams`] runs it against
//! a Kafka-compatible cluster.
//!
//! ```
//! use weir_streams::{StreamsBuilder, StringSerde, I64Serde, Nullable, TopologyTestDriver,
//!     TestInputTopic, TestOutputTopic, TestRecord};
//!
//! # fn main() -> Result<(), weir_streams::Error> {
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream("words", StringSerde, StringSerde)
//!     .flat_map_values(|line: String| line.split(' ').map(str::to_string).collect::<Vec<_>>())
//!     .group_by(|_, word| word.clone())
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
//!   integers, JSON, [`Nullable`], windowed keys).
//! - `kstream`: the DSL. [`StreamsBuilder`] → [`KStream`] → [`KGroupedStream`] /
//!   [`TimeWindowedKStream`] → [`KTable`].
//! - `topology`: the graph the DSL builds. Each operator registers a closure on its parent's
//!   node; a record flows depth-first from the source that deserialized it through every
//!   operator to the sinks, which serialize it into output records. A [`Topology`] is one
//!   task: its processors, its stores, its stream time.
//! - `store`, `window`: in-memory key-value stores ([`ReadOnlyKeyValueStore`] to read them)
//!   and tumbling windows.
//! - `driver`: the [`TopologyTestDriver`].
//! - `runtime`: [`KafkaStreams`], the topology against a cluster through weir-client:
//!   consume a batch, process it, produce its outputs, wait for their acknowledgements,
//!   commit its input offsets (at least once).
//!
//! # Semantics
//! - **Time.** Each record's event time comes from a [`TimestampExtractor`] (by default the
//!   Kafka record's timestamp); a negative one skips the record. Stream time is the largest
//!   event time the task has processed. Operators keep the input record's timestamp;
//!   aggregates carry the largest timestamp that went into them.
//! - **Tables.** Every aggregate update is forwarded downstream at once, as Kafka Streams does
//!   with record caching disabled.
//! - **Windows.** [`TumblingWindows`] are aligned to the epoch; a record whose window's end
//!   plus grace is at or before stream time is dropped and counted
//!   ([`TaskMetrics::dropped_late`]), exactly Kafka's rule. The default grace is zero
//!   (Kafka's `ofSizeWithNoGrace`).
//! - **Bad input.** A key or value that does not deserialize stops processing with
//!   [`Error::Deserialize`] naming topic, partition and offset (Kafka's default
//!   `LogAndFailExceptionHandler`). Records without a key need a [`Nullable`] key serde.
//! - **Nulls.** Keys and values are typed, so a null is the `None` of a [`Nullable`] serde
//!   and aggregations count it like any other value; Kafka Streams' aggregations skip records
//!   with a null key or value. Filter them out first for Kafka's behaviour.
//! - **At least once.** [`KafkaStreams`] commits a batch's input offsets only after every
//!   output of the batch is acknowledged, so no input is lost; the records after the last
//!   commit run again after a crash (their outputs are written twice). State lives in memory
//!   only: a restarted instance starts its aggregates empty, over the records after the
//!   committed offsets. A rebalance during a batch hands the same instance its uncommitted
//!   records again, and its aggregates count them twice.
//! - **Records.** Headers are not carried from inputs to outputs; outputs are partitioned by
//!   the producer's default partitioner on the serialized key.
//!
//! # Not built yet
//! Issue 12 asks for much more; this increment deliberately leaves out:
//! - repartitioning: `group_by`/`select_key` before an aggregation do not go through a
//!   repartition topic, so an aggregation only sees its own task's records. That is correct
//!   while one task reads every input partition (the test driver; one application instance)
//!   and wrong once work is split by partition;
//! - tasks per input partition, several instances sharing work, co-partitioning checks;
//! - tables from topics (`builder.table`), KTable operators (filter, map_values, join),
//!   tombstones in tables, old values in updates;
//! - joins of any kind; hopping, sliding and session windows; suppress ("emit final
//!   results");
//! - persistent stores, changelog topics and restoration; window retention (window stores
//!   grow until the task is dropped); range queries on windows by time;
//! - the processor API and punctuation; interactive queries across instances;
//! - exactly-once (the runtime's process → produce → flush → commit path is where a
//!   transaction will go); deserialization handlers other than fail (log-and-skip,
//!   dead-letter topic);
//! - a benchmark, and a comparison with Apache Kafka Streams on the same input.
//!
//! The DSL cannot build a cycle (an operator only ever feeds a node made after it), so the
//! topology needs no cycle check.

mod driver;
mod error;
mod join;
mod kstream;
mod ktable;
mod runtime;
pub mod serdes;
mod store;
mod topology;
mod window;
mod windowed;

pub use driver::{TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver};
pub use error::Error;
pub use kstream::{
    BranchedKStream, KGroupedStream, KStream, Predicate, RecordTimestamp, StreamsBuilder,
    TimestampExtractor,
};
pub use ktable::{KTable, Suppressed};
pub use runtime::{KafkaStreams, StreamsConfig};
pub use serdes::{
    BytesSerde, I32Serde, I64Serde, JsonSerde, Nullable, Serde, SessionWindowedSerde, StringSerde,
    TimeWindowedSerde,
};
pub use store::ReadOnlyKeyValueStore;
pub use topology::{Data, RawRecord, TaskMetrics, Topology};
pub use window::{
    JoinWindows, SessionWindows, SlidingWindows, TimeWindows, TumblingWindows, Window, Windowed,
};
pub use windowed::{SessionWindowedKStream, TimeWindowedKStream};
