//! User state stores: [`Stores`] describes them, [`StreamsBuilder::add_state_store`] adds them
//! to the topology, and processors connected to them read and write them through a
//! [`KeyValueStore`].

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::kstream::StreamsBuilder;
use crate::serdes::Serde;
use crate::store::SharedStore;
use crate::topology::Data;

/// A writable key-value state store (Kafka's `KeyValueStore`), as a processor connected to it
/// gets it from [`ProcessorContext::key_value_store`](super::ProcessorContext::key_value_store).
/// A handle: clones share the store, so a punctuator can keep one. Reads through
/// [`ReadOnlyKeyValueStore`](crate::ReadOnlyKeyValueStore) (the test driver's and
/// `KafkaStreams`' `key_value_store`) see every write at once.
pub struct KeyValueStore<K, V> {
    pub(crate) name: String,
    pub(crate) entries: SharedStore<K, V>,
}

impl<K, V> Clone for KeyValueStore<K, V> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            entries: Arc::clone(&self.entries),
        }
    }
}

impl<K, V> std::fmt::Debug for KeyValueStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueStore")
            .field("name", &self.name)
            .finish()
    }
}

/// The timestamp entries written through a plain key-value store carry: Kafka's plain stores
/// keep none, and the shared entries hold one for timestamped (DSL) stores.
const NO_TIMESTAMP: i64 = -1;

impl<K: Ord + Clone, V: Clone> KeyValueStore<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value for `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        self.entries.lock().get(key).map(|(value, _)| value.clone())
    }

    /// Sets the value of `key`. Its timestamp, as
    /// [`ReadOnlyKeyValueStore::get_with_timestamp`](crate::ReadOnlyKeyValueStore::get_with_timestamp)
    /// reads it, is `-1`: a plain key-value store keeps none.
    pub fn put(&self, key: K, value: V) {
        self.entries.lock().insert(key, (value, NO_TIMESTAMP));
    }

    /// Sets the value of `key` unless it has one; returns the value it had.
    pub fn put_if_absent(&self, key: K, value: V) -> Option<V> {
        let mut entries = self.entries.lock();
        if let Some((old, _)) = entries.get(&key) {
            return Some(old.clone());
        }
        entries.insert(key, (value, NO_TIMESTAMP));
        None
    }

    /// Sets the value of every key in `entries`.
    pub fn put_all(&self, entries: impl IntoIterator<Item = (K, V)>) {
        let mut store = self.entries.lock();
        for (key, value) in entries {
            store.insert(key, (value, NO_TIMESTAMP));
        }
    }

    /// Removes `key`; returns the value it had.
    pub fn delete(&self, key: &K) -> Option<V> {
        self.entries.lock().remove(key).map(|(value, _)| value)
    }

    /// Every entry, sorted by key (a copy: the store may change while the caller iterates).
    pub fn all(&self) -> Vec<(K, V)> {
        self.entries
            .lock()
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    /// The entries with `from <= key <= to`, sorted by key.
    pub fn range(&self, from: &K, to: &K) -> Vec<(K, V)> {
        if from > to {
            return Vec::new();
        }
        self.entries
            .lock()
            .range(from.clone()..=to.clone())
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    /// How many keys the store holds (exact for an in-memory store).
    pub fn approximate_num_entries(&self) -> u64 {
        self.entries.lock().len() as u64
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
}

impl Stores {
    /// An in-memory key-value store named `name`.
    pub fn in_memory_key_value_store(name: &str) -> KeyValueBytesStoreSupplier {
        KeyValueBytesStoreSupplier {
            name: name.to_string(),
        }
    }

    /// A key-value store of `K` to `V` from `supplier`, to add with
    /// [`StreamsBuilder::add_state_store`]. The in-memory store holds typed keys and values,
    /// so the serdes only give the types for now; they are what a changelog topic will be
    /// written with.
    pub fn key_value_store_builder<K: Data + Ord, V: Data>(
        supplier: KeyValueBytesStoreSupplier,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> KeyValueStoreBuilder<K, V> {
        let _ = (key_serde, value_serde);
        KeyValueStoreBuilder {
            name: supplier.name,
            types: PhantomData,
        }
    }
}

/// Builds a key-value store (Kafka's `StoreBuilder<KeyValueStore<K, V>>`).
pub struct KeyValueStoreBuilder<K, V> {
    name: String,
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
}

impl StreamsBuilder {
    /// Adds a state store to the topology (Kafka's `StreamsBuilder#addStateStore`), for the
    /// processors that name it in [`KStream::process`](crate::KStream::process) or
    /// [`KStream::process_values`](crate::KStream::process_values). A name already used by
    /// another store is refused by [`StreamsBuilder::build`].
    pub fn add_state_store<K: Data + Ord, V: Data>(&self, builder: KeyValueStoreBuilder<K, V>) {
        let store: SharedStore<K, V> = Arc::new(Mutex::new(BTreeMap::new()));
        self.state.lock().add_store(&builder.name, Arc::new(store));
    }
}
