//! User state stores: [`Stores`] describes them, [`StreamsBuilder::add_state_store`] adds them
//! to the topology, and processors connected to them read and write them through a
//! [`KeyValueStore`].

use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::Error;
use crate::kstream::StreamsBuilder;
use crate::serdes::Serde;
use crate::store::{
    NO_TIMESTAMP, SharedStore, ValueFormat, encode_change, log_change, logged_store,
    register_persistent_store,
};
use crate::topology::{Context, Data, SerdeRef};

/// A writable key-value state store (Kafka's `KeyValueStore`), as a processor connected to it
/// gets it from [`ProcessorContext::key_value_store`](super::ProcessorContext::key_value_store).
/// A handle: clones share the store, so a punctuator can keep one. Reads through
/// [`ReadOnlyKeyValueStore`](crate::ReadOnlyKeyValueStore) (the test driver's and
/// `KafkaStreams`' `key_value_store`) see every write at once.
pub struct KeyValueStore<K, V> {
    pub(crate) name: String,
    pub(crate) entries: SharedStore<K, V>,
    /// Where its writes are logged, unless logging is disabled (or it is a DSL store).
    pub(crate) log: Option<Arc<StoreLogger<K, V>>>,
}

impl<K, V> Clone for KeyValueStore<K, V> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            entries: Arc::clone(&self.entries),
            log: self.log.clone(),
        }
    }
}

/// A logged store's changelog records not yet handed to the task: the store is written
/// through handles that have no task context, so its writes wait here, serialized, until
/// the processor call that made them returns ([`StoreLog::drain_into`]). A write that did not
/// serialize waits as its error, which fails that call, as Kafka's `put` throws.
pub(crate) struct StoreLog {
    store: String,
    topic: String,
    pending: Mutex<Vec<Result<SerializedChange, Error>>>,
    /// The keys a window or session store's retention dropped, as the local state holds
    /// them: deleted from it, not logged (as Kafka's dropped segments are not).
    expired: Mutex<Vec<Bytes>>,
    /// Puts a window or session store dropped because their window had expired, for the
    /// task's `dropped_late` (Kafka counts them in its dropped-records metric).
    dropped: AtomicU64,
}

/// A changelog record's serialized key and value (`None`: a tombstone).
type SerializedChange = (Vec<u8>, Option<Vec<u8>>);

impl StoreLog {
    pub(crate) fn new(store: &str, topic: String) -> Self {
        Self {
            store: store.to_string(),
            topic,
            pending: Mutex::new(Vec::new()),
            expired: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Counts a put dropped because its window had expired.
    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Fails the processor call that made a write (a windowed key of an expired window
    /// that did not serialize, to delete it from the local state).
    pub(crate) fn fail(&self, error: Error) {
        self.pending.lock().push(Err(error));
    }

    /// Keys to delete from the task's local state when the processor call returns.
    pub(crate) fn expire(&self, keys: Vec<Bytes>) {
        if !keys.is_empty() {
            self.expired.lock().extend(keys);
        }
    }

    /// Writes the waiting records to the task's changelog partition with `timestamp` (the
    /// record or punctuation being processed, as Kafka's change logging uses the record
    /// context's); the first write that did not serialize fails.
    pub(crate) fn drain_into(&self, ctx: &mut Context, timestamp: i64) -> Result<(), Error> {
        ctx.metrics.dropped_late += self.dropped.swap(0, Ordering::Relaxed);
        let expired = std::mem::take(&mut *self.expired.lock());
        ctx.expired.extend(
            expired
                .into_iter()
                .map(|key| (self.store.clone(), key, None)),
        );
        let pending = std::mem::take(&mut *self.pending.lock());
        for record in pending {
            let (key, value) = record?;
            log_change(ctx, &self.topic, key, value, timestamp);
        }
        Ok(())
    }
}

/// Serializes the writes of one logged store for its [`StoreLog`]: Kafka's plain
/// `keyValueStoreBuilder`, `windowStoreBuilder` and `sessionStoreBuilder` log the serialized
/// key (a window or session store's in Kafka's windowed key formats) and the serialized
/// value alone (no timestamp prefix, unlike the DSL's timestamped stores), a tombstone for a
/// deletion.
pub(crate) struct StoreLogger<K, V> {
    pub(crate) key_serde: SerdeRef<K>,
    pub(crate) value_serde: SerdeRef<V>,
    pub(crate) log: Arc<StoreLog>,
}

impl<K: 'static, V: 'static> StoreLogger<K, V> {
    pub(crate) fn log(&self, key: &K, value: Option<&V>) {
        let record = encode_change(
            &self.log.topic,
            (&*self.key_serde, &*self.value_serde),
            key,
            value,
            (ValueFormat::Plain, NO_TIMESTAMP),
        );
        self.log.pending.lock().push(record);
    }
}

impl<K, V> std::fmt::Debug for KeyValueStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueStore")
            .field("name", &self.name)
            .finish()
    }
}

impl<K: Ord + Clone + 'static, V: Clone + 'static> KeyValueStore<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value for `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        self.entries.lock().get(key).map(|(value, _)| value)
    }

    /// Sets the value of `key`. Its timestamp, as
    /// [`ReadOnlyKeyValueStore::get_with_timestamp`](crate::ReadOnlyKeyValueStore::get_with_timestamp)
    /// reads it, is `-1`: a plain key-value store keeps none.
    pub fn put(&self, key: K, value: V) {
        self.logged(&key, Some(&value));
        self.entries.lock().put(key, Some((value, NO_TIMESTAMP)));
    }

    fn logged(&self, key: &K, value: Option<&V>) {
        if let Some(log) = &self.log {
            log.log(key, value);
        }
    }

    /// Sets the value of `key` unless it has one; returns the value it had.
    pub fn put_if_absent(&self, key: K, value: V) -> Option<V> {
        let mut entries = self.entries.lock();
        if let Some((old, _)) = entries.get(&key) {
            return Some(old);
        }
        self.logged(&key, Some(&value));
        entries.put(key, Some((value, NO_TIMESTAMP)));
        None
    }

    /// Sets the value of every key in `entries`.
    pub fn put_all(&self, entries: impl IntoIterator<Item = (K, V)>) {
        let mut store = self.entries.lock();
        for (key, value) in entries {
            self.logged(&key, Some(&value));
            store.put(key, Some((value, NO_TIMESTAMP)));
        }
    }

    /// Removes `key`; returns the value it had.
    pub fn delete(&self, key: &K) -> Option<V> {
        let old = self.entries.lock().remove(key).map(|(value, _)| value);
        // Kafka's change logging writes the tombstone whether or not the key was there.
        self.logged(key, None);
        old
    }

    /// Every entry, sorted by key (a copy: the store may change while the caller iterates).
    pub fn all(&self) -> Vec<(K, V)> {
        self.entries_in((Bound::Unbounded, Bound::Unbounded))
    }

    /// The entries with `from <= key <= to`, sorted by key.
    pub fn range(&self, from: &K, to: &K) -> Vec<(K, V)> {
        self.entries_in((Bound::Included(from.clone()), Bound::Included(to.clone())))
    }

    fn entries_in(&self, keys: (Bound<K>, Bound<K>)) -> Vec<(K, V)> {
        self.entries
            .lock()
            .range(keys)
            .into_iter()
            .map(|(k, (v, _))| (k, v))
            .collect()
    }

    /// How many keys the store holds (exact for an in-memory store; see
    /// [`ReadOnlyKeyValueStore::approximate_num_entries`](crate::ReadOnlyKeyValueStore::approximate_num_entries)
    /// for a persistent one).
    pub fn approximate_num_entries(&self) -> u64 {
        self.entries.lock().len()
    }
}

/// Describes state stores (Kafka's `Stores`).
#[derive(Debug, Clone, Copy)]
pub struct Stores;

/// An in-memory key-value store of a given name (Kafka's `KeyValueBytesStoreSupplier` from
/// `Stores.inMemoryKeyValueStore`).
#[derive(Debug, Clone)]
pub struct KeyValueBytesStoreSupplier {
    name: String,
    persistent: bool,
}

impl Stores {
    /// An in-memory key-value store named `name`: every entry stays in memory, also with a
    /// state dir (whose local copy then only makes restarts cheap).
    pub fn in_memory_key_value_store(name: &str) -> KeyValueBytesStoreSupplier {
        KeyValueBytesStoreSupplier {
            name: name.to_string(),
            persistent: false,
        }
    }

    /// A persistent key-value store named `name` (Kafka's `persistentKeyValueStore`): with a
    /// [`StreamsConfig::state_dir`](crate::StreamsConfig::state_dir) and logging on, served
    /// from the task's local state with a bounded cache
    /// ([`StreamsConfig::store_cache_max_entries`](crate::StreamsConfig::store_cache_max_entries)),
    /// so that it can hold more than memory; without a state dir, or with logging disabled,
    /// in memory.
    pub fn persistent_key_value_store(name: &str) -> KeyValueBytesStoreSupplier {
        KeyValueBytesStoreSupplier {
            name: name.to_string(),
            persistent: true,
        }
    }

    /// A key-value store of `K` to `V` from `supplier`, to add with
    /// [`StreamsBuilder::add_state_store`]. The in-memory store holds typed keys and values;
    /// the serdes write its changelog topic `<application.id>-<name>-changelog` (logging is
    /// on by default, as Kafka's; see [`KeyValueStoreBuilder::with_logging_disabled`]).
    pub fn key_value_store_builder<K: Data + Ord, V: Data>(
        supplier: KeyValueBytesStoreSupplier,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> KeyValueStoreBuilder<K, V> {
        KeyValueStoreBuilder {
            name: supplier.name,
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
            logging: true,
            persistent: supplier.persistent,
            types: PhantomData,
        }
    }
}

/// Builds a key-value store (Kafka's `StoreBuilder<KeyValueStore<K, V>>`).
pub struct KeyValueStoreBuilder<K, V> {
    name: String,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    logging: bool,
    persistent: bool,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for KeyValueStoreBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueStoreBuilder")
            .field("name", &self.name)
            .finish()
    }
}

impl<K, V> KeyValueStoreBuilder<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Keeps the store out of any changelog (Kafka's `withLoggingDisabled`): it starts empty
    /// whenever its task is created, on another instance or after a restart.
    #[must_use]
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }

    /// Whether the store is logged to a changelog topic (Kafka's `loggingEnabled`).
    pub fn logging_enabled(&self) -> bool {
        self.logging
    }
}

/// A state store to add with [`StreamsBuilder::add_state_store`] (Kafka's `StoreBuilder`):
/// a [`KeyValueStoreBuilder`], [`WindowStoreBuilder`](super::WindowStoreBuilder) or
/// [`SessionStoreBuilder`](super::SessionStoreBuilder), from [`Stores`]. Sealed: a store is
/// one of these.
pub trait StoreBuilder: sealed::Sealed {
    /// The store's name.
    fn name(&self) -> &str;

    /// Whether the store is logged to a changelog topic (Kafka's `loggingEnabled`).
    fn logging_enabled(&self) -> bool;
}

pub(crate) mod sealed {
    /// Adds a store to a builder's topology; only the crate's builders implement it.
    pub trait Sealed {
        fn add_to(self, builder: &crate::StreamsBuilder);
    }
}

impl<K: Data + Ord, V: Data> StoreBuilder for KeyValueStoreBuilder<K, V> {
    fn name(&self) -> &str {
        &self.name
    }

    fn logging_enabled(&self) -> bool {
        self.logging
    }
}

impl StreamsBuilder {
    /// Adds a state store to the topology (Kafka's `StreamsBuilder#addStateStore`), for the
    /// processors that name it in [`KStream::process`](crate::KStream::process) or
    /// [`KStream::process_values`](crate::KStream::process_values): a key-value, window or
    /// session store from [`Stores`]. A name already used by another store, and a window or
    /// session store [`Stores`] would refuse (a retention below the window size...), are
    /// refused by [`StreamsBuilder::build`], naming the store.
    ///
    /// Unless the builder's `with_logging_disabled`, every write is logged to
    /// `<name>-changelog`, and a task created on another instance or after a restart restores
    /// the store from it (and from its local state) before it processes.
    pub fn add_state_store(&self, builder: impl StoreBuilder) {
        sealed::Sealed::add_to(builder, self);
    }
}

impl<K: Data + Ord, V: Data> sealed::Sealed for KeyValueStoreBuilder<K, V> {
    fn add_to(self, streams: &StreamsBuilder) {
        let store: SharedStore<K, V> = crate::store::new_store();
        let mut state = streams.state.lock();
        state.add_store(&self.name, Arc::new(Arc::clone(&store)));
        if self.logging {
            if self.persistent {
                register_persistent_store(
                    &mut state,
                    &self.name,
                    &store,
                    (Arc::clone(&self.key_serde), Arc::clone(&self.value_serde)),
                    ValueFormat::Plain,
                );
            }
            let topic = logged_store(
                &mut state,
                &self.name,
                &store,
                Arc::clone(&self.key_serde),
                Arc::clone(&self.value_serde),
                ValueFormat::Plain,
            );
            let logger = Arc::new(StoreLogger {
                key_serde: self.key_serde,
                value_serde: self.value_serde,
                log: Arc::new(StoreLog::new(&self.name, topic)),
            });
            let log = Arc::clone(&logger.log);
            state.store_logs.insert(self.name, (log, Arc::new(logger)));
        }
    }
}
