//! Read-only views of window and session stores (Kafka's `ReadOnlyWindowStore` and
//! `ReadOnlySessionStore`), the interactive queries of windowed aggregations by time range.
//!
//! A windowed aggregation's store is sorted by key, then window (in memory, or persistent
//! with its local state in Kafka's windowed key formats); its [`Retention`] is shared with
//! the views, so a window the store counts as expired is not
//! seen by a query even before the store's next sweep drops it.

use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::Error;
use crate::store::{SharedStore, is_empty_range};
use crate::topology::BuilderState;
use crate::window::{Window, Windowed};
use crate::windowed::Retention;

/// What a windowed store holds: the time its retention counts from differs (a window's
/// start, a session's end), and so do the queries it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowedStoreKind {
    /// Time windows (tumbling, hopping) or sliding windows: Kafka's window store.
    Window,
    /// Sessions: Kafka's session store.
    Session,
}

impl WindowedStoreKind {
    /// The time of a window that retention counts from.
    pub(crate) fn time_of(self, window: &Window) -> i64 {
        match self {
            Self::Window => window.start,
            Self::Session => window.end,
        }
    }

    /// The time retention counts from, read from a changelog key in Kafka's window and
    /// session store key formats: the key, then the window start (8 bytes, big-endian) and a
    /// 4-byte sequence number; or the key, then the session's end and start.
    pub(crate) fn time_in_changelog_key(self, key: &[u8]) -> Option<i64> {
        let at = key.len().checked_sub(self.times_len())?;
        let bytes: [u8; 8] = key.get(at..at + 8)?.try_into().ok()?;
        Some(i64::from_be_bytes(bytes))
    }

    /// How many bytes of times follow the key in a changelog key.
    pub(crate) fn times_len(self) -> usize {
        match self {
            // The start, then the sequence number.
            Self::Window => 12,
            Self::Session => 16,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Window => "a window store",
            Self::Session => "a session store",
        }
    }
}

/// One task's windowed store: its entries and its retention.
pub(crate) struct WindowedStore<K, V> {
    pub(crate) kind: WindowedStoreKind,
    pub(crate) entries: SharedStore<Windowed<K>, V>,
    pub(crate) retention: Arc<Mutex<Retention>>,
}

impl<K, V> Clone for WindowedStore<K, V> {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind,
            entries: Arc::clone(&self.entries),
            retention: Arc::clone(&self.retention),
        }
    }
}

impl<K: Ord + Clone, V: Clone> WindowedStore<K, V> {
    fn expired_until(&self) -> i64 {
        self.retention.lock().expired_until()
    }

    /// The unexpired entries with keys in `keys` whose window `keep`s.
    fn collect(
        &self,
        keys: KeyBounds<'_, K>,
        keep: impl Fn(&Window) -> bool,
    ) -> Vec<(Windowed<K>, V)> {
        let expired = self.expired_until();
        let kind = self.kind;
        let mut entries = self.entries.lock();
        let found = match keys {
            (Bound::Included(from), Bound::Included(to)) if from == to => {
                entries.windows(kind, from, expired.saturating_add(1), i64::MAX)
            }
            (from, to) => {
                if is_empty_range(from, to) {
                    return Vec::new();
                }
                // Every window of a key lies between its key with the lowest window and its
                // key with the highest: an included bound takes them all, an excluded one none.
                let windowed = |key: &K, start: i64| Windowed {
                    key: key.clone(),
                    window: Window { start, end: start },
                };
                let low = match from {
                    Bound::Included(key) => Bound::Included(windowed(key, i64::MIN)),
                    Bound::Excluded(key) => Bound::Excluded(windowed(key, i64::MAX)),
                    Bound::Unbounded => Bound::Unbounded,
                };
                let high = match to {
                    Bound::Included(key) => Bound::Included(windowed(key, i64::MAX)),
                    Bound::Excluded(key) => Bound::Excluded(windowed(key, i64::MIN)),
                    Bound::Unbounded => Bound::Unbounded,
                };
                entries.range((low, high))
            }
        };
        found
            .into_iter()
            .filter(|(key, _)| kind.time_of(&key.window) > expired && keep(&key.window))
            .map(|(key, (value, _))| (key, value))
            .collect()
    }
}

/// The keys a query covers: either end may be open.
type KeyBounds<'a, K> = (Bound<&'a K>, Bound<&'a K>);

/// Exactly `key`.
fn only<K>(key: &K) -> KeyBounds<'_, K> {
    (Bound::Included(key), Bound::Included(key))
}

/// Every key.
fn every<'a, K>() -> KeyBounds<'a, K> {
    (Bound::Unbounded, Bound::Unbounded)
}

/// The bounds of a caller's key range.
fn bounds_of<'k, K>(keys: &impl RangeBounds<&'k K>) -> KeyBounds<'k, K> {
    (keys.start_bound().cloned(), keys.end_bound().cloned())
}

/// Registers the windowed store `name` for the queries of [`ReadOnlyWindowStore`] and
/// [`ReadOnlySessionStore`] (it is registered as a key-value store of windowed keys too).
pub(crate) fn register_windowed_store<K: Send + 'static, V: Send + 'static>(
    state: &mut BuilderState,
    name: &str,
    store: WindowedStore<K, V>,
) {
    state
        .windowed_stores
        .insert(name.to_string(), Arc::new(store));
}

/// The store `name` among a topology's windowed stores, if it is one of `kind`.
pub(crate) fn windowed_store<K: 'static, V: 'static>(
    stores: &std::collections::BTreeMap<String, Arc<dyn std::any::Any + Send + Sync>>,
    name: &str,
    kind: WindowedStoreKind,
) -> Result<WindowedStore<K, V>, Error> {
    let store = stores
        .get(name)
        .ok_or_else(|| Error::UnknownStore(name.to_string()))?
        .downcast_ref::<WindowedStore<K, V>>()
        .ok_or_else(|| Error::StoreType(name.to_string()))?;
    if store.kind != kind {
        return Err(Error::StoreKind {
            store: name.to_string(),
            expected: kind.describe(),
        });
    }
    Ok(store.clone())
}

/// The entries of every task's store, merged in `order`.
fn merged<K: Ord + Clone, V: Clone, O: Ord>(
    stores: &[WindowedStore<K, V>],
    select: impl Fn(&WindowedStore<K, V>) -> Vec<(Windowed<K>, V)>,
    order: impl Fn(&Windowed<K>) -> O,
) -> Vec<(Windowed<K>, V)> {
    let mut found: Vec<(Windowed<K>, V)> = stores.iter().flat_map(select).collect();
    found.sort_by_key(|(key, _)| order(key));
    found
}

/// A read-only view of a window store (Kafka's `ReadOnlyWindowStore`): the aggregates of a
/// time-windowed (tumbling, hopping) or sliding-windowed aggregation, by key and window
/// start. Times are window starts, bounds inclusive; windows the store's retention expired
/// are not found. Reads see the store as it is at the time of the read. On
/// [`KafkaStreams`](crate::KafkaStreams) it spans the store of every task the instance had
/// when the view was taken (the tasks hold disjoint keys).
pub struct ReadOnlyWindowStore<K, V> {
    pub(crate) name: String,
    pub(crate) stores: Vec<WindowedStore<K, V>>,
}

impl<K, V> std::fmt::Debug for ReadOnlyWindowStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyWindowStore")
            .field("name", &self.name)
            .finish()
    }
}

/// Windows in the order of Kafka's in-memory window store: by start, then key.
fn start_then_key<K: Clone>(key: &Windowed<K>) -> (i64, K) {
    (key.window.start, key.key.clone())
}

impl<K: Ord + Clone, V: Clone> ReadOnlyWindowStore<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The aggregate of `key` in the window that starts at `window_start`.
    pub fn fetch(&self, key: &K, window_start: i64) -> Option<V> {
        self.fetch_range(key, window_start, window_start)
            .into_iter()
            .next()
            .map(|(_, value)| value)
    }

    /// The windows of `key` starting in `[time_from, time_to]`, as (window start, aggregate),
    /// oldest first.
    pub fn fetch_range(&self, key: &K, time_from: i64, time_to: i64) -> Vec<(i64, V)> {
        let in_range = |window: &Window| (time_from..=time_to).contains(&window.start);
        merged(
            &self.stores,
            |store| store.collect(only(key), in_range),
            |key| key.window.start,
        )
        .into_iter()
        .map(|(key, value)| (key.window.start, value))
        .collect()
    }

    /// [`ReadOnlyWindowStore::fetch_range`], newest first.
    pub fn backward_fetch(&self, key: &K, time_from: i64, time_to: i64) -> Vec<(i64, V)> {
        let mut found = self.fetch_range(key, time_from, time_to);
        found.reverse();
        found
    }

    /// The windows of the keys in `[from_key, to_key]` starting in `[time_from, time_to]`,
    /// by start, then key (the order of Kafka's in-memory window store). Empty when
    /// `from_key > to_key`.
    pub fn fetch_key_range(
        &self,
        from_key: &K,
        to_key: &K,
        time_from: i64,
        time_to: i64,
    ) -> Vec<(Windowed<K>, V)> {
        self.fetch_keys(
            (Bound::Included(from_key), Bound::Included(to_key)),
            time_from,
            time_to,
        )
    }

    /// The windows of the keys in `keys` starting in `[time_from, time_to]`, by start, then
    /// key. Either end of `keys` may be open, as Kafka's `fetch(null, keyTo, …)`:
    /// `windows.fetch_keys(..=&to, from, to_time)`. Empty when the key range is.
    pub fn fetch_keys<'k>(
        &self,
        keys: impl RangeBounds<&'k K>,
        time_from: i64,
        time_to: i64,
    ) -> Vec<(Windowed<K>, V)>
    where
        K: 'k,
    {
        let in_range = |window: &Window| (time_from..=time_to).contains(&window.start);
        let keys = bounds_of(&keys);
        merged(
            &self.stores,
            |store| store.collect(keys, in_range),
            start_then_key,
        )
    }

    /// [`ReadOnlyWindowStore::fetch_keys`], in reverse order.
    pub fn backward_fetch_keys<'k>(
        &self,
        keys: impl RangeBounds<&'k K>,
        time_from: i64,
        time_to: i64,
    ) -> Vec<(Windowed<K>, V)>
    where
        K: 'k,
    {
        let mut found = self.fetch_keys(keys, time_from, time_to);
        found.reverse();
        found
    }

    /// [`ReadOnlyWindowStore::fetch_key_range`], in reverse order.
    pub fn backward_fetch_key_range(
        &self,
        from_key: &K,
        to_key: &K,
        time_from: i64,
        time_to: i64,
    ) -> Vec<(Windowed<K>, V)> {
        let mut found = self.fetch_key_range(from_key, to_key, time_from, time_to);
        found.reverse();
        found
    }

    /// Every key's windows starting in `[time_from, time_to]`, by start, then key.
    pub fn fetch_all(&self, time_from: i64, time_to: i64) -> Vec<(Windowed<K>, V)> {
        let in_range = |window: &Window| (time_from..=time_to).contains(&window.start);
        merged(
            &self.stores,
            |store| store.collect(every(), in_range),
            start_then_key,
        )
    }

    /// Every window the store holds, by start, then key.
    pub fn all(&self) -> Vec<(Windowed<K>, V)> {
        merged(
            &self.stores,
            |store| store.collect(every(), |_| true),
            start_then_key,
        )
    }
}

/// A read-only view of a session store (Kafka's `ReadOnlySessionStore`): the aggregates of a
/// session-windowed aggregation, by key and session. Sessions come by end, then start
/// (oldest first); sessions the store's retention expired are not found. On
/// [`KafkaStreams`](crate::KafkaStreams) it spans the store of every task the instance had
/// when the view was taken.
pub struct ReadOnlySessionStore<K, V> {
    pub(crate) name: String,
    pub(crate) stores: Vec<WindowedStore<K, V>>,
}

impl<K, V> std::fmt::Debug for ReadOnlySessionStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlySessionStore")
            .field("name", &self.name)
            .finish()
    }
}

/// Sessions in the order of Kafka's session stores for one key: by end, then start.
fn end_then_start<K>(key: &Windowed<K>) -> (i64, i64) {
    (key.window.end, key.window.start)
}

impl<K: Ord + Clone, V: Clone> ReadOnlySessionStore<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every session of `key`, by end, then start.
    pub fn fetch(&self, key: &K) -> Vec<(Windowed<K>, V)> {
        self.find_sessions(key, i64::MIN, i64::MAX)
    }

    /// [`ReadOnlySessionStore::fetch`], newest first.
    pub fn backward_fetch(&self, key: &K) -> Vec<(Windowed<K>, V)> {
        self.backward_find_sessions(key, i64::MIN, i64::MAX)
    }

    /// The sessions of `key` that end at or after `earliest_session_end` and start at or
    /// before `latest_session_start` (those that overlap that span), by end, then start.
    pub fn find_sessions(
        &self,
        key: &K,
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Vec<(Windowed<K>, V)> {
        let overlaps = |window: &Window| {
            window.end >= earliest_session_end && window.start <= latest_session_start
        };
        merged(
            &self.stores,
            |store| store.collect(only(key), overlaps),
            end_then_start,
        )
    }

    /// [`ReadOnlySessionStore::find_sessions`], newest first.
    pub fn backward_find_sessions(
        &self,
        key: &K,
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Vec<(Windowed<K>, V)> {
        let mut found = self.find_sessions(key, earliest_session_end, latest_session_start);
        found.reverse();
        found
    }

    /// The sessions of the keys in `keys` that end at or after `earliest_session_end` and
    /// start at or before `latest_session_start`, by end, then key, then start (the order of
    /// Kafka's in-memory session store). Either end of `keys` may be open, as Kafka's
    /// `findSessions(null, keyTo, …)`; [`ReadOnlySessionStore::fetch_keys`] takes every time.
    pub fn find_sessions_of_keys<'k>(
        &self,
        keys: impl RangeBounds<&'k K>,
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Vec<(Windowed<K>, V)>
    where
        K: 'k,
    {
        let overlaps = |window: &Window| {
            window.end >= earliest_session_end && window.start <= latest_session_start
        };
        let keys = bounds_of(&keys);
        merged(
            &self.stores,
            |store| store.collect(keys, overlaps),
            |found| (found.window.end, found.key.clone(), found.window.start),
        )
    }

    /// Every session of the keys in `keys` (either end may be open), by end, then key, then
    /// start.
    pub fn fetch_keys<'k>(&self, keys: impl RangeBounds<&'k K>) -> Vec<(Windowed<K>, V)>
    where
        K: 'k,
    {
        self.find_sessions_of_keys(keys, i64::MIN, i64::MAX)
    }

    /// The aggregate of `key`'s session `[session_start, session_end]`.
    pub fn fetch_session(&self, key: &K, session_start: i64, session_end: i64) -> Option<V> {
        let session = Window {
            start: session_start,
            end: session_end,
        };
        self.find_sessions(key, session_end, session_start)
            .into_iter()
            .find(|(found, _)| found.window == session)
            .map(|(_, value)| value)
    }
}
