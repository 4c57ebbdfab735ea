//! In-memory key-value state stores, and the read-only view of one that tests and interactive
//! queries get.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// The contents of an in-memory key-value store: each key's value and the timestamp of its
/// last update (Kafka's timestamped key-value store, KIP-258), sorted by key.
pub(crate) type Entries<K, V> = BTreeMap<K, (V, i64)>;

/// A shared handle on one store's entries.
pub(crate) type SharedStore<K, V> = Arc<Mutex<Entries<K, V>>>;

/// A read-only view of a key-value state store (Kafka's `ReadOnlyKeyValueStore`). Reads see
/// the store as it is at the time of the read.
pub struct ReadOnlyKeyValueStore<K, V> {
    pub(crate) name: String,
    pub(crate) entries: SharedStore<K, V>,
}

impl<K, V> std::fmt::Debug for ReadOnlyKeyValueStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyKeyValueStore")
            .field("name", &self.name)
            .finish()
    }
}

impl<K: Ord + Clone, V: Clone> ReadOnlyKeyValueStore<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value for `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        self.entries.lock().get(key).map(|(value, _)| value.clone())
    }

    /// The value for `key` and the timestamp of its last update.
    pub fn get_with_timestamp(&self, key: &K) -> Option<(V, i64)> {
        self.entries.lock().get(key).cloned()
    }

    /// Every entry, sorted by key.
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
