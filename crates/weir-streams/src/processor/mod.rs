//! The processor API (Kafka's `org.apache.kafka.streams.processor.api`): user
//! [`Processor`]s wired into a DSL topology with [`KStream::process`] and
//! [`KStream::process_values`], with state stores ([`StreamsBuilder::add_state_store`](crate::StreamsBuilder::add_state_store),
//! [`KeyValueStore`], [`WindowStore`], [`SessionStore`]) and punctuation
//! ([`ProcessorContext::schedule`]).
//!
//! ```
//! use std::time::Duration;
//! use weir_streams::processor::Record;
//! use weir_streams::{Error, I64Serde, KeyValueStore, Processor, ProcessorContext,
//!     PunctuationType, Stores, StreamsBuilder, StringSerde, TestInputTopic, TestOutputTopic,
//!     TestRecord, TopologyTestDriver};
//!
//! /// Counts per key; every 10 s of stream time, emits every key's total.
//! struct CountPerKey(Option<KeyValueStore<String, i64>>);
//!
//! impl Processor<String, String, String, i64> for CountPerKey {
//!     fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> Result<(), Error> {
//!         let counts = ctx.key_value_store::<String, i64>("counts")?;
//!         self.0 = Some(counts.clone());
//!         ctx.schedule(Duration::from_secs(10), PunctuationType::StreamTime, move |time, ctx| {
//!             for (key, count) in counts.all() {
//!                 ctx.forward(Record::new(key, count, time))?;
//!             }
//!             Ok(())
//!         })?;
//!         Ok(())
//!     }
//!
//!     fn process(
//!         &mut self,
//!         _ctx: &mut ProcessorContext<'_, String, i64>,
//!         record: Record<String, String>,
//!     ) -> Result<(), Error> {
//!         if let Some(counts) = &self.0 {
//!             counts.put(record.key.clone(), counts.get(&record.key).unwrap_or(0) + 1);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Error> {
//! let builder = StreamsBuilder::new();
//! builder.add_state_store(Stores::key_value_store_builder(
//!     Stores::in_memory_key_value_store("counts"),
//!     StringSerde,
//!     I64Serde,
//! ));
//! builder
//!     .stream("events", StringSerde, StringSerde)
//!     .process(|| CountPerKey(None), &["counts"])
//!     .to("totals", StringSerde, I64Serde);
//! let mut driver = TopologyTestDriver::new(builder.build()?);
//! let events = TestInputTopic::new("events", StringSerde, StringSerde);
//! let totals = TestOutputTopic::new("totals", StringSerde, I64Serde);
//! for (key, time) in [("a", 1_000), ("b", 2_000), ("a", 12_000)] {
//!     driver.pipe_input(&events, &key.to_string(), &String::new(), time)?;
//! }
//! // Stream-time punctuations are aligned to 0: at the first record, then at 10 s.
//! assert_eq!(driver.read_output(&totals)?, vec![
//!     TestRecord::new("a".to_string(), 1, 1_000),
//!     TestRecord::new("a".to_string(), 2, 12_000),
//!     TestRecord::new("b".to_string(), 1, 12_000),
//! ]);
//! # Ok(())
//! # }
//! ```
//!
//! A processor node is shared by the sink its parent stream calls for each record and by the
//! topology's processor list, through which the task initializes, punctuates and closes it.
//! Both run on the task's thread, one at a time; the node's lock is never taken twice on one
//! call stack because the graph is acyclic (a processor never reaches itself downstream).

mod punctuation;
mod store;
mod windowed_store;

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

pub use punctuation::{Cancellable, PunctuationType, RecordMetadata};
pub(crate) use punctuation::{ProcessorTaskState, WallClock, punctuate, system_time_ms};
pub(crate) use store::StoreLog;
pub use store::{
    KeyValueBytesStoreSupplier, KeyValueStore, KeyValueStoreBuilder, StoreBuilder, Stores,
};
pub use windowed_store::{
    SessionBytesStoreSupplier, SessionStore, SessionStoreBuilder, WindowBytesStoreSupplier,
    WindowStore, WindowStoreBuilder,
};

use crate::Error;
use crate::kstream::KStream;
use crate::topology::{BuilderState, Context, Data, Node, Record as TopologyRecord};
use crate::window_store::WindowedStoreKind;

/// A record as a processor gets and forwards it (Kafka's `api.Record`, without headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// The timestamp (milliseconds since the epoch).
    pub timestamp: i64,
}

impl<K, V> Record<K, V> {
    /// A record with this key, value and timestamp.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Self {
            key,
            value,
            timestamp,
        }
    }

    /// The record with another key.
    pub fn with_key<KR>(self, key: KR) -> Record<KR, V> {
        Record {
            key,
            value: self.value,
            timestamp: self.timestamp,
        }
    }

    /// The record with another value.
    pub fn with_value<VR>(self, value: VR) -> Record<K, VR> {
        Record {
            key: self.key,
            value,
            timestamp: self.timestamp,
        }
    }

    /// The record with another timestamp.
    pub fn with_timestamp(self, timestamp: i64) -> Self {
        Self { timestamp, ..self }
    }
}

/// A record whose key a [`FixedKeyProcessor`] cannot change (Kafka's `FixedKeyRecord`): only
/// records it was given can be forwarded, with a new value or timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedKeyRecord<K, V> {
    key: K,
    /// The value.
    pub value: V,
    /// The timestamp (milliseconds since the epoch).
    pub timestamp: i64,
}

impl<K, V> FixedKeyRecord<K, V> {
    /// The key.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The record with another value.
    pub fn with_value<VR>(self, value: VR) -> FixedKeyRecord<K, VR> {
        FixedKeyRecord {
            key: self.key,
            value,
            timestamp: self.timestamp,
        }
    }

    /// The record with another timestamp.
    pub fn with_timestamp(self, timestamp: i64) -> Self {
        Self { timestamp, ..self }
    }
}

/// A processor of records with keys `KIn` and values `VIn` that forwards records with keys
/// `KOut` and values `VOut` (Kafka's `api.Processor`). The context comes with every call
/// instead of being kept from `init`: it borrows the task.
pub trait Processor<KIn, VIn, KOut, VOut>: Send + 'static {
    /// Called once before the first record or punctuation of the task: get stores, schedule
    /// punctuations.
    fn init(&mut self, context: &mut ProcessorContext<'_, KOut, VOut>) -> Result<(), Error> {
        let _ = context;
        Ok(())
    }

    /// Processes one record; forwards any number of records downstream through `context`.
    fn process(
        &mut self,
        context: &mut ProcessorContext<'_, KOut, VOut>,
        record: Record<KIn, VIn>,
    ) -> Result<(), Error>;

    /// Called once when the task closes.
    fn close(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// A processor that keeps each record's key (Kafka's `api.FixedKeyProcessor`), for
/// [`KStream::process_values`].
pub trait FixedKeyProcessor<K, VIn, VOut>: Send + 'static {
    /// Called once before the first record or punctuation of the task.
    fn init(&mut self, context: &mut FixedKeyProcessorContext<'_, K, VOut>) -> Result<(), Error> {
        let _ = context;
        Ok(())
    }

    /// Processes one record; forwards any number of records with its key through `context`.
    fn process(
        &mut self,
        context: &mut FixedKeyProcessorContext<'_, K, VOut>,
        record: FixedKeyRecord<K, VIn>,
    ) -> Result<(), Error>;

    /// Called once when the task closes.
    fn close(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

type StoreMap = BTreeMap<String, Arc<dyn Any + Send + Sync>>;

/// A logged store's log, untyped for draining, and its typed logger for store handles.
pub(crate) type LoggedStore = (Arc<StoreLog>, Arc<dyn Any + Send + Sync>);

type Punctuator<KOut, VOut> =
    Box<dyn FnMut(i64, &mut ProcessorContext<'_, KOut, VOut>) -> Result<(), Error> + Send>;

/// What a processor can do besides returning (Kafka's `api.ProcessorContext`): forward
/// records downstream, schedule punctuations, read the task's times and the input record's
/// metadata, and use the state stores it is connected to.
pub struct ProcessorContext<'a, KOut, VOut> {
    task: &'a mut Context,
    child: &'a Node<KOut, VOut>,
    stores: &'a StoreMap,
    loggers: &'a StoreMap,
    punctuators: &'a mut HashMap<u64, Punctuator<KOut, VOut>>,
    processor: usize,
    name: &'a str,
}

impl<KOut, VOut> std::fmt::Debug for ProcessorContext<'_, KOut, VOut> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorContext")
            .field("processor", &self.name)
            .field("stream_time", &self.task.stream_time)
            .finish_non_exhaustive()
    }
}

impl<KOut: Data, VOut: Data> ProcessorContext<'_, KOut, VOut> {
    /// Sends `record` to every operator downstream of this processor, which process it before
    /// this returns. Use [`Record::with_value`] and the like on the input record to keep its
    /// timestamp, or [`Record::with_timestamp`] to give another.
    pub fn forward(&mut self, record: Record<KOut, VOut>) -> Result<(), Error> {
        self.child.forward(
            self.task,
            TopologyRecord {
                key: record.key,
                value: record.value,
                timestamp: record.timestamp,
            },
        )
    }

    /// Calls `punctuator` every `interval` of stream time or wall-clock time (Kafka's
    /// `schedule`); see [`PunctuationType`]. The punctuator gets the time of the punctuation
    /// (stream or wall-clock) and a context to forward records and schedule or cancel
    /// punctuations; it captures the stores it needs ([`KeyValueStore`] handles). Intervals
    /// below one millisecond are refused.
    pub fn schedule(
        &mut self,
        interval: Duration,
        kind: PunctuationType,
        punctuator: impl FnMut(i64, &mut ProcessorContext<'_, KOut, VOut>) -> Result<(), Error>
        + Send
        + 'static,
    ) -> Result<Cancellable, Error> {
        let (id, cancellable) = self
            .task
            .processor_api
            .schedule(self.processor, interval, kind)?;
        self.punctuators.insert(id, Box::new(punctuator));
        Ok(cancellable)
    }
}

impl<KOut, VOut> ProcessorContext<'_, KOut, VOut> {
    /// The task's stream time: the largest timestamp it has processed, `-1` before the first.
    pub fn current_stream_time_ms(&self) -> i64 {
        self.task.stream_time
    }

    /// The wall-clock time: the system clock's in `KafkaStreams`, the mocked clock's in the
    /// test driver.
    pub fn current_system_time_ms(&self) -> i64 {
        self.task.processor_api.clock.now()
    }

    /// The topic, partition and offset of the input record being processed; `None` in `init`
    /// and in punctuations (and downstream of a punctuation).
    pub fn record_metadata(&self) -> Option<&RecordMetadata> {
        self.task.processor_api.record_metadata.as_ref()
    }

    /// This processor's name, as build errors give it.
    pub fn processor_name(&self) -> &str {
        self.name
    }

    /// The key-value store `name` (Kafka's `getStateStore`), which must be connected to this
    /// processor: named in `process`/`process_values`.
    pub fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<KeyValueStore<K, V>, Error> {
        let store = self.connected(name)?;
        // A window or session store holds windowed keys, but is written through its handle.
        if self.windowed_handle(name).is_some() {
            return Err(Error::StoreKind {
                store: name.to_string(),
                expected: "a key-value store",
            });
        }
        let entries = store
            .downcast_ref::<crate::store::SharedStore<K, V>>()
            .ok_or_else(|| Error::StoreType(name.to_string()))?;
        let log = self
            .loggers
            .get(name)
            .and_then(|logger| logger.downcast_ref::<Arc<store::StoreLogger<K, V>>>())
            .cloned();
        Ok(KeyValueStore {
            name: name.to_string(),
            entries: Arc::clone(entries),
            log,
        })
    }

    /// The window store `name` (Kafka's `getStateStore`), which must be connected to this
    /// processor and added as a window store
    /// ([`Stores::window_store_builder`]); the error says which of these it is not, or that
    /// it holds other key or value types.
    pub fn window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<WindowStore<K, V>, Error> {
        self.typed_handle(name, WindowedStoreKind::Window)
    }

    /// The session store `name` (Kafka's `getStateStore`), as
    /// [`ProcessorContext::window_store`] ([`Stores::session_store_builder`]).
    pub fn session_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<SessionStore<K, V>, Error> {
        self.typed_handle(name, WindowedStoreKind::Session)
    }

    fn connected(&self, name: &str) -> Result<&Arc<dyn Any + Send + Sync>, Error> {
        self.stores
            .get(name)
            .ok_or_else(|| Error::StoreNotConnected {
                processor: self.name.to_string(),
                store: name.to_string(),
            })
    }

    fn windowed_handle(&self, name: &str) -> Option<&windowed_store::WindowedHandle> {
        self.loggers.get(name)?.downcast_ref()
    }

    fn typed_handle<H: Clone + 'static>(
        &self,
        name: &str,
        kind: WindowedStoreKind,
    ) -> Result<H, Error> {
        self.connected(name)?;
        match self.windowed_handle(name) {
            Some(found) if found.kind == kind => found
                .handle
                .downcast_ref::<H>()
                .cloned()
                .ok_or_else(|| Error::StoreType(name.to_string())),
            _ => Err(Error::StoreKind {
                store: name.to_string(),
                expected: match kind {
                    WindowedStoreKind::Window => {
                        "a window store added with StreamsBuilder::add_state_store"
                    }
                    WindowedStoreKind::Session => {
                        "a session store added with StreamsBuilder::add_state_store"
                    }
                },
            }),
        }
    }

    /// The same context for a shorter borrow, to wrap in a [`FixedKeyProcessorContext`].
    fn reborrow(&mut self) -> ProcessorContext<'_, KOut, VOut> {
        ProcessorContext {
            task: self.task,
            child: self.child,
            stores: self.stores,
            loggers: self.loggers,
            punctuators: self.punctuators,
            processor: self.processor,
            name: self.name,
        }
    }
}

/// The context of a [`FixedKeyProcessor`] (Kafka's `api.FixedKeyProcessorContext`): as
/// [`ProcessorContext`], forwarding only [`FixedKeyRecord`]s.
pub struct FixedKeyProcessorContext<'a, K, VOut> {
    inner: ProcessorContext<'a, K, VOut>,
}

impl<K, VOut> std::fmt::Debug for FixedKeyProcessorContext<'_, K, VOut> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<K: Data, VOut: Data> FixedKeyProcessorContext<'_, K, VOut> {
    /// Sends `record` downstream; see [`ProcessorContext::forward`].
    pub fn forward(&mut self, record: FixedKeyRecord<K, VOut>) -> Result<(), Error> {
        self.inner.forward(Record {
            key: record.key,
            value: record.value,
            timestamp: record.timestamp,
        })
    }

    /// Schedules a punctuation; see [`ProcessorContext::schedule`].
    pub fn schedule(
        &mut self,
        interval: Duration,
        kind: PunctuationType,
        mut punctuator: impl FnMut(i64, &mut FixedKeyProcessorContext<'_, K, VOut>) -> Result<(), Error>
        + Send
        + 'static,
    ) -> Result<Cancellable, Error> {
        self.inner.schedule(interval, kind, move |time, ctx| {
            punctuator(
                time,
                &mut FixedKeyProcessorContext {
                    inner: ctx.reborrow(),
                },
            )
        })
    }
}

impl<K, VOut> FixedKeyProcessorContext<'_, K, VOut> {
    /// See [`ProcessorContext::current_stream_time_ms`].
    pub fn current_stream_time_ms(&self) -> i64 {
        self.inner.current_stream_time_ms()
    }

    /// See [`ProcessorContext::current_system_time_ms`].
    pub fn current_system_time_ms(&self) -> i64 {
        self.inner.current_system_time_ms()
    }

    /// See [`ProcessorContext::record_metadata`].
    pub fn record_metadata(&self) -> Option<&RecordMetadata> {
        self.inner.record_metadata()
    }

    /// See [`ProcessorContext::processor_name`].
    pub fn processor_name(&self) -> &str {
        self.inner.processor_name()
    }

    /// See [`ProcessorContext::key_value_store`].
    pub fn key_value_store<KS: 'static, VS: 'static>(
        &self,
        name: &str,
    ) -> Result<KeyValueStore<KS, VS>, Error> {
        self.inner.key_value_store(name)
    }

    /// See [`ProcessorContext::window_store`].
    pub fn window_store<KS: 'static, VS: 'static>(
        &self,
        name: &str,
    ) -> Result<WindowStore<KS, VS>, Error> {
        self.inner.window_store(name)
    }

    /// See [`ProcessorContext::session_store`].
    pub fn session_store<KS: 'static, VS: 'static>(
        &self,
        name: &str,
    ) -> Result<SessionStore<KS, VS>, Error> {
        self.inner.session_store(name)
    }
}

/// Marks the types a [`FixedKey`] adapter runs on, without owning any (so it stays `Send`).
type Types<K, VIn, VOut> = PhantomData<fn() -> (K, VIn, VOut)>;

/// Runs a [`FixedKeyProcessor`] as a [`Processor`] that keeps the key.
struct FixedKey<P, K, VIn, VOut> {
    processor: P,
    types: Types<K, VIn, VOut>,
}

impl<P, K, VIn, VOut> Processor<K, VIn, K, VOut> for FixedKey<P, K, VIn, VOut>
where
    P: FixedKeyProcessor<K, VIn, VOut>,
    K: Data,
    VIn: Data,
    VOut: Data,
{
    fn init(&mut self, context: &mut ProcessorContext<'_, K, VOut>) -> Result<(), Error> {
        self.processor.init(&mut FixedKeyProcessorContext {
            inner: context.reborrow(),
        })
    }

    fn process(
        &mut self,
        context: &mut ProcessorContext<'_, K, VOut>,
        record: Record<K, VIn>,
    ) -> Result<(), Error> {
        let record = FixedKeyRecord {
            key: record.key,
            value: record.value,
            timestamp: record.timestamp,
        };
        self.processor.process(
            &mut FixedKeyProcessorContext {
                inner: context.reborrow(),
            },
            record,
        )
    }

    fn close(&mut self) -> Result<(), Error> {
        self.processor.close()
    }
}

type Supplier<KIn, VIn, KOut, VOut> =
    Box<dyn FnMut() -> Box<dyn Processor<KIn, VIn, KOut, VOut>> + Send>;

/// A processor in the graph: its supplier, its instance once the task initialized it, its
/// stores, its punctuators, and the node its records go to.
struct ProcessorCell<KIn, VIn, KOut, VOut> {
    name: String,
    /// Its position in the topology's processor list, which punctuation schedules name.
    index: usize,
    supplier: Supplier<KIn, VIn, KOut, VOut>,
    processor: Option<Box<dyn Processor<KIn, VIn, KOut, VOut>>>,
    store_names: Vec<String>,
    /// The connected stores, resolved by name when the topology is built.
    stores: StoreMap,
    /// The typed loggers of the connected stores that are logged, by store name.
    loggers: StoreMap,
    /// Their logs, drained into the task's outputs after each call into the processor.
    logs: Vec<Arc<StoreLog>>,
    punctuators: HashMap<u64, Punctuator<KOut, VOut>>,
    child: Node<KOut, VOut>,
}

impl<KIn: Data, VIn: Data, KOut: Data, VOut: Data> ProcessorCell<KIn, VIn, KOut, VOut> {
    /// Creates and initializes the processor unless it was already.
    fn ensure_init(&mut self, task: &mut Context) -> Result<(), Error> {
        if self.processor.is_some() {
            return Ok(());
        }
        let mut processor = (self.supplier)();
        let mut ctx = ProcessorContext {
            task,
            child: &self.child,
            stores: &self.stores,
            loggers: &self.loggers,
            punctuators: &mut self.punctuators,
            processor: self.index,
            name: &self.name,
        };
        processor.init(&mut ctx)?;
        self.processor = Some(processor);
        // Writes made in `init` come before any record: a changelog record still needs a
        // valid create time, which stream time (-1 until the first record) may not give.
        let now = match task.stream_time {
            time if time >= 0 => time,
            _ => task.processor_api.clock.now(),
        };
        drain_logs(&self.logs, task, now)
    }

    fn process(
        &mut self,
        task: &mut Context,
        record: TopologyRecord<KIn, VIn>,
    ) -> Result<(), Error> {
        self.ensure_init(task)?;
        let Self {
            name,
            index,
            processor: Some(processor),
            stores,
            loggers,
            logs,
            punctuators,
            child,
            ..
        } = self
        else {
            return Ok(());
        };
        let mut ctx = ProcessorContext {
            task,
            child,
            stores,
            loggers,
            punctuators,
            processor: *index,
            name,
        };
        let timestamp = record.timestamp;
        let processed = processor.process(
            &mut ctx,
            Record {
                key: record.key,
                value: record.value,
                timestamp,
            },
        );
        // Logged even when the processor failed: what it wrote is in the store.
        let logged = drain_logs(logs, task, timestamp);
        processed.and(logged)
    }
}

/// Hands the changelog records the stores in `logs` hold to the task, with `timestamp`.
fn drain_logs(logs: &[Arc<StoreLog>], task: &mut Context, timestamp: i64) -> Result<(), Error> {
    for log in logs {
        log.drain_into(task, timestamp)?;
    }
    Ok(())
}

/// A processor as the task sees it, whatever its types.
pub(crate) trait ProcessorNode: Send + Sync {
    /// Resolves the stores the processor names; the message names the processor and the
    /// missing store.
    fn connect_stores(
        &self,
        stores: &StoreMap,
        logs: &BTreeMap<String, LoggedStore>,
    ) -> Result<(), String>;
    fn init(&self, task: &mut Context) -> Result<(), Error>;
    fn punctuate(&self, task: &mut Context, punctuator: u64, time: i64) -> Result<(), Error>;
    /// Forgets a cancelled punctuator.
    fn drop_punctuator(&self, punctuator: u64);
    fn close(&self) -> Result<(), Error>;
}

impl<KIn: Data, VIn: Data, KOut: Data, VOut: Data> ProcessorNode
    for Mutex<ProcessorCell<KIn, VIn, KOut, VOut>>
{
    fn connect_stores(
        &self,
        stores: &StoreMap,
        logs: &BTreeMap<String, LoggedStore>,
    ) -> Result<(), String> {
        let mut cell = self.lock();
        let mut connected = BTreeMap::new();
        let mut loggers = BTreeMap::new();
        let mut connected_logs = Vec::new();
        for name in &cell.store_names {
            let store = stores.get(name).ok_or_else(|| {
                format!(
                    "processor {} is connected to state store {name}, which was not added \
                     (StreamsBuilder::add_state_store)",
                    cell.name
                )
            })?;
            connected.insert(name.clone(), Arc::clone(store));
            if let Some((log, logger)) = logs.get(name) {
                loggers.insert(name.clone(), Arc::clone(logger));
                connected_logs.push(Arc::clone(log));
            }
        }
        cell.stores = connected;
        cell.loggers = loggers;
        cell.logs = connected_logs;
        Ok(())
    }

    fn init(&self, task: &mut Context) -> Result<(), Error> {
        self.lock().ensure_init(task)
    }

    fn punctuate(&self, task: &mut Context, punctuator: u64, time: i64) -> Result<(), Error> {
        let mut cell = self.lock();
        // Taken out while it runs, as it gets the processor's punctuators to schedule more.
        let Some(mut run) = cell.punctuators.remove(&punctuator) else {
            return Ok(());
        };
        let cell = &mut *cell;
        let mut ctx = ProcessorContext {
            task,
            child: &cell.child,
            stores: &cell.stores,
            loggers: &cell.loggers,
            punctuators: &mut cell.punctuators,
            processor: cell.index,
            name: &cell.name,
        };
        let result = run(time, &mut ctx);
        cell.punctuators.insert(punctuator, run);
        let logged = drain_logs(&cell.logs, task, time);
        result.and(logged)
    }

    fn drop_punctuator(&self, punctuator: u64) {
        self.lock().punctuators.remove(&punctuator);
    }

    fn close(&self) -> Result<(), Error> {
        match self.lock().processor.take() {
            Some(mut processor) => processor.close(),
            None => Ok(()),
        }
    }
}

impl BuilderState {
    /// Connects every processor to the stores it names; a missing store is a build error.
    pub(crate) fn connect_processor_stores(&mut self) {
        for processor in &self.processors {
            if let Err(error) = processor.connect_stores(&self.stores, &self.store_logs) {
                self.errors.push(error);
            }
        }
    }
}

impl<K: Data, V: Data> KStream<K, V> {
    /// The records `processor` forwards for each record of this stream and from its
    /// punctuations (Kafka's `KStream#process`). `supplier` makes the processor when the task
    /// starts (once per task); `store_names` are the stores it may use, added with
    /// [`StreamsBuilder::add_state_store`](crate::StreamsBuilder::add_state_store) (or a DSL store's name): a name that is not is
    /// refused by [`StreamsBuilder::build`](crate::StreamsBuilder::build), naming the processor (`KSTREAM-PROCESSOR-<n>`).
    pub fn process<KR: Data, VR: Data, P: Processor<K, V, KR, VR>>(
        &self,
        mut supplier: impl FnMut() -> P + Send + 'static,
        store_names: &[&str],
    ) -> KStream<KR, VR> {
        let child = self.add_processor(
            "KSTREAM-PROCESSOR",
            Box::new(move || Box::new(supplier())),
            store_names,
        );
        // The processor may change keys: a stateful operator after it repartitions, as
        // Kafka's does after `process`.
        KStream::on(child, &self.state, self.lineage.rekeyed())
    }

    /// As [`KStream::process`], with a processor that keeps each record's key (Kafka's
    /// `KStream#processValues`); named `KSTREAM-PROCESSVALUES-<n>`.
    pub fn process_values<VR: Data, P: FixedKeyProcessor<K, V, VR>>(
        &self,
        mut supplier: impl FnMut() -> P + Send + 'static,
        store_names: &[&str],
    ) -> KStream<K, VR> {
        let child = self.add_processor(
            "KSTREAM-PROCESSVALUES",
            Box::new(move || {
                Box::new(FixedKey {
                    processor: supplier(),
                    types: PhantomData,
                })
            }),
            store_names,
        );
        KStream::on(child, &self.state, self.lineage.clone())
            .with_serdes(self.key_serde.clone(), None)
    }

    fn add_processor<KR: Data, VR: Data>(
        &self,
        prefix: &str,
        supplier: Supplier<K, V, KR, VR>,
        store_names: &[&str],
    ) -> Node<KR, VR> {
        let child = Node::new();
        let cell = {
            let mut state = self.state.lock();
            let cell = Arc::new(Mutex::new(ProcessorCell {
                name: state.generated_name(prefix),
                index: state.processors.len(),
                supplier,
                processor: None,
                store_names: store_names.iter().map(ToString::to_string).collect(),
                stores: BTreeMap::new(),
                loggers: BTreeMap::new(),
                logs: Vec::new(),
                punctuators: HashMap::new(),
                child: child.clone(),
            }));
            state
                .processors
                .push(Arc::clone(&cell) as Arc<dyn ProcessorNode>);
            cell
        };
        self.node
            .add_sink(move |ctx, record| cell.lock().process(ctx, record));
        child
    }
}
