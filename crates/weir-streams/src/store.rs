//! Key-value state stores: in memory, or served from a task's local state with a bounded
//! cache (a persistent store), and the read-only view of one that tests and interactive
//! queries get.

use std::collections::{BTreeMap, VecDeque};
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::Error;
use crate::serdes::Serde;
use crate::state::TaskState;
use crate::topology::{
    BuilderState, Context, InternalTopic, InternalTopicKind, RawRecord, Restorer, SerdeRef,
};
use crate::window::{Window, Windowed};
use crate::window_store::WindowedStoreKind;
use crate::windowed::{Retention, key_range};

/// The contents of an in-memory key-value store: each key's value and the timestamp of its
/// last update (Kafka's timestamped key-value store, KIP-258), sorted by key.
pub(crate) type Entries<K, V> = BTreeMap<K, (V, i64)>;

/// A shared handle on one store's entries.
pub(crate) type SharedStore<K, V> = Arc<Mutex<StoreEntries<K, V>>>;

/// A new, empty, in-memory store.
pub(crate) fn new_store<K, V>() -> SharedStore<K, V> {
    Arc::new(Mutex::new(StoreEntries {
        map: BTreeMap::new(),
        disk: None,
        memory_sweep: None,
    }))
}

/// The entries of one task's key-value store. In memory (the default, and always for join
/// and suppression buffers): `map` holds every entry. Persistent (a logged key-value, window
/// or session store of a task with local state, once [`PersistentStore::attach`]ed): the
/// task's local state database holds the entries as of the last commit, and `map` holds the
/// entries updated since (which the database does not have yet) and a bounded cache of the
/// others, so the store can outgrow memory.
pub(crate) struct StoreEntries<K, V> {
    map: Entries<K, V>,
    disk: Option<Box<DiskStore<K, V>>>,
    /// An in-memory windowed store's sweep under way, a step per record as the local
    /// state's (dropping 100,000 windows in one `retain` held a record up for 20 ms).
    memory_sweep: Option<MemorySweep<K>>,
}

/// A sweep of an in-memory windowed store for entries expired at `until`.
struct MemorySweep<K> {
    until: i64,
    /// The last key visited; `None` before the first step.
    after: Option<K>,
}

/// Reads a persistent store's entries from the task's local state.
struct DiskStore<K, V> {
    /// Weak: a read-only view kept by an application must not keep a task's directory
    /// locked after the task moved away.
    state: Weak<TaskState>,
    store: String,
    codec: Arc<dyn KeyValueCodec<K, V>>,
    /// Clean entries (those the database holds) kept in `map` at most.
    max_cached: usize,
    /// The state of every key `map` holds, and of the keys deleted since the last commit:
    /// one map, so that a lookup or an update costs one search of it.
    meta: BTreeMap<K, Meta>,
    /// How many keys of `meta` are clean.
    clean: usize,
    /// The uses of clean keys in tick order, for evicting the least recently used: a use
    /// whose tick is no longer its key's is stale and skipped (cheaper than a second map
    /// ordered by tick).
    uses: VecDeque<(u64, K)>,
    clock: u64,
    /// The keys marked dirty since the last commit (a key deleted from `meta` since may be
    /// among them, or one twice): a commit visits them, not every key `meta` holds.
    dirty: Vec<K>,
    /// The first failed read, for the task to stop on (Kafka's `ProcessorStateException`):
    /// the lookups that hit it cannot return an error themselves.
    failed: Option<Error>,
    /// A window or session store's sweep of its local state for expired keys, under way.
    sweep: Option<Sweep>,
}

/// A sweep of a windowed store's local state for keys expired at `until`: a step at a time
/// (see [`SWEEP_STEP`]), so a sweep over many keys holds no record up for long.
struct Sweep {
    until: i64,
    /// The last key visited; `None` before the first step.
    after: Option<Vec<u8>>,
}

/// How many keys of the local state one step of a sweep visits (about a millisecond's
/// work): a store of 100,000 windows was swept in one go in 70 ms, which a record waited for.
const SWEEP_STEP: usize = 2048;

/// What a persistent store knows of a key beyond its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meta {
    /// Updated since the last commit: `map` has its value or, if it has not the key, it was
    /// deleted (the database holds the old value until the commit).
    Dirty,
    /// The database holds its value and `map` caches it: the tick at which it was queued
    /// for eviction (in `DiskStore::uses`) and that of its last use. A use only writes
    /// `used`, so a cache hit costs no allocation.
    Clean { queued: u64, used: u64 },
}

/// How a persistent store's keys and values look in its changelog, and so in the local state.
pub(crate) trait KeyValueCodec<K, V>: Send + Sync {
    fn write_key(&self, key: &K) -> Result<Vec<u8>, Error>;
    fn read_key(&self, data: &[u8]) -> Result<K, Error>;
    fn read_value(&self, data: &[u8]) -> Result<(V, i64), Error>;
}

struct ChangelogCodec<K, V> {
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    format: ValueFormat,
}

impl<K: 'static, V: 'static> KeyValueCodec<K, V> for ChangelogCodec<K, V> {
    fn write_key(&self, key: &K) -> Result<Vec<u8>, Error> {
        self.key_serde.serialize(key)
    }

    fn read_key(&self, data: &[u8]) -> Result<K, Error> {
        self.key_serde.deserialize(data)
    }

    fn read_value(&self, data: &[u8]) -> Result<(V, i64), Error> {
        decode_value(self.format, &*self.value_serde, data)
    }
}

impl<K: Ord + Clone, V: Clone> StoreEntries<K, V> {
    /// The value of `key` and the timestamp of its last update.
    pub(crate) fn get(&mut self, key: &K) -> Option<(V, i64)> {
        let Some(disk) = &mut self.disk else {
            return self.map.get(key).cloned();
        };
        if let Some(found) = self.map.get(key) {
            disk.touch(key);
            return Some(found.clone());
        }
        if disk.meta.contains_key(key) {
            // Deleted since the commit.
            return None;
        }
        let found = disk.read(key)?;
        self.map.insert(key.clone(), found.clone());
        disk.cache(key.clone());
        disk.evict(&mut self.map);
        Some(found)
    }

    /// Puts `value` for `key`; returns the value it replaces.
    pub(crate) fn insert(&mut self, key: K, value: (V, i64)) -> Option<(V, i64)> {
        let Some(disk) = &mut self.disk else {
            return self.map.insert(key, value);
        };
        let old = match self.map.insert(key.clone(), value) {
            Some(old) => Some(old),
            None => disk.read_unless_known(&key),
        };
        disk.mark_dirty(key);
        old
    }

    /// Puts what `update` makes of `key`'s value (`None`: it has none) for `key`; returns
    /// the value replaced and the one put. An aggregation's step: one search of `map`
    /// instead of a removal and an insertion (and, when persistent, a read of the local state
    /// for a key it does not know).
    pub(crate) fn update(
        &mut self,
        key: K,
        update: impl FnOnce(Option<&(V, i64)>) -> (V, i64),
    ) -> (Option<(V, i64)>, (V, i64)) {
        // A key the persistent store does not know has the database's value, which `map`
        // does not cache; a known one has its value in `map`, or was deleted since the commit.
        let stored = match &mut self.disk {
            None => None,
            Some(disk) => {
                let stored = disk.read_unless_known(&key);
                disk.mark_dirty(key.clone());
                stored
            }
        };
        Self::update_in(&mut self.map, key, stored, update)
    }

    /// [`StoreEntries::update`] on `map`, where a key it has not has the value `stored`.
    fn update_in(
        map: &mut Entries<K, V>,
        key: K,
        stored: Option<(V, i64)>,
        update: impl FnOnce(Option<&(V, i64)>) -> (V, i64),
    ) -> (Option<(V, i64)>, (V, i64)) {
        use std::collections::btree_map::Entry;

        match map.entry(key) {
            Entry::Occupied(mut entry) => {
                let value = update(Some(entry.get()));
                let put = value.clone();
                (Some(std::mem::replace(entry.get_mut(), value)), put)
            }
            Entry::Vacant(entry) => {
                let value = update(stored.as_ref());
                let put = value.clone();
                entry.insert(value);
                (stored, put)
            }
        }
    }

    /// Deletes `key`; returns the value it had.
    pub(crate) fn remove(&mut self, key: &K) -> Option<(V, i64)> {
        let Some(disk) = &mut self.disk else {
            return self.map.remove(key);
        };
        let old = match self.map.remove(key) {
            Some(old) => Some(old),
            None => disk.read_unless_known(key),
        };
        disk.mark_dirty(key.clone());
        old
    }

    /// Puts `value` for `key`, or deletes it for `None`, without reading what it replaces.
    pub(crate) fn put(&mut self, key: K, value: Option<(V, i64)>) {
        if let Some(disk) = &mut self.disk {
            disk.mark_dirty(key.clone());
        }
        match value {
            Some(value) => self.map.insert(key, value),
            None => self.map.remove(&key),
        };
    }

    /// How many keys the store holds: exact in memory; for a persistent store, the
    /// database's count plus the keys added since the commit (a key updated or deleted since
    /// is counted as the database has it).
    pub(crate) fn len(&self) -> u64 {
        let Some(disk) = &self.disk else {
            return self.map.len() as u64;
        };
        let stored = disk
            .state
            .upgrade()
            .and_then(|state| state.count(&disk.store).ok())
            .unwrap_or(0);
        let dirty = disk.meta.len() - disk.clean;
        stored.saturating_add(dirty as u64)
    }

    /// The entries with keys in `keys`, in key order. A persistent store reads its whole
    /// table for it: the database orders keys by their bytes, the store by `K`.
    pub(crate) fn range(&mut self, keys: (Bound<K>, Bound<K>)) -> Vec<(K, (V, i64))> {
        if is_empty_range(keys.0.as_ref(), keys.1.as_ref()) {
            return Vec::new();
        }
        let Some(disk) = &mut self.disk else {
            return self
                .map
                .range(keys)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        };
        let mut found: BTreeMap<K, (V, i64)> = disk
            .read_all()
            .into_iter()
            .filter(|(key, _)| keys.contains(key) && disk.meta.get(key) != Some(&Meta::Dirty))
            .collect();
        for (key, meta) in disk.meta.range(keys) {
            if *meta == Meta::Dirty
                && let Some(value) = self.map.get(key)
            {
                found.insert(key.clone(), value.clone());
            }
        }
        found.into_iter().collect()
    }
}

/// The windows (or sessions) of one key as `kind`'s stores order them in memory.
fn windows_in<K: Ord + Clone, V: Clone>(
    map: &Entries<Windowed<K>, V>,
    kind: WindowedStoreKind,
    key: &K,
    from: i64,
    to: i64,
) -> Vec<(Windowed<K>, (V, i64))> {
    let clone = |(key, value): (&Windowed<K>, &(V, i64))| (key.clone(), value.clone());
    match kind {
        WindowedStoreKind::Window => key_range(map, key, from, to).map(clone).collect(),
        WindowedStoreKind::Session => key_range(map, key, i64::MIN, i64::MAX)
            .filter(|(key, _)| (from..=to).contains(&key.window.end))
            .map(clone)
            .collect(),
    }
}

/// The time ranges that cover `[from, to]` in the byte order of big-endian `i64`s, in which
/// negative times sort after every other.
fn byte_order_ranges(from: i64, to: i64) -> Vec<(i64, i64)> {
    if from > to {
        Vec::new()
    } else if from >= 0 || to < 0 {
        vec![(from, to)]
    } else {
        vec![(0, to), (from, -1)]
    }
}

/// A window or session store: its entries by key, then window (Kafka's window and session
/// stores), in memory or persistent.
impl<K: Ord + Clone, V: Clone> StoreEntries<Windowed<K>, V> {
    /// The windows of `key` whose time (`kind`'s: a window's start, a session's end) lies in
    /// `[from, to]`, by start, then end. A persistent store reads them from its local state
    /// too (a range of its keys: Kafka's key schemas put the times after the key) and caches
    /// what it read.
    pub(crate) fn windows(
        &mut self,
        kind: WindowedStoreKind,
        key: &K,
        from: i64,
        to: i64,
    ) -> Vec<(Windowed<K>, (V, i64))> {
        let Some(disk) = &mut self.disk else {
            return windows_in(&self.map, kind, key, from, to);
        };
        let mut read_any = false;
        for (windowed, value) in disk.read_windows(kind, key, from, to) {
            // A key it knows is in `map` already, or was deleted since the commit.
            if !disk.meta.contains_key(&windowed) {
                self.map.insert(windowed.clone(), value);
                disk.cache(windowed);
                read_any = true;
            }
        }
        let found = windows_in(&self.map, kind, key, from, to);
        if read_any {
            disk.evict(&mut self.map);
        }
        found
    }

    /// Drops the windows whose time (`kind`'s) is at or before `expired`, the first
    /// [`SWEEP_STEP`] keys' worth of them in memory when all are there (the rest a step per
    /// [`StoreEntries::continue_sweep`]: a lookup skips expired windows anyway). Returns those
    /// dropped from memory that the local state does not hold yet (all of them in memory),
    /// and the keys (as the local state holds them) of those it holds; the caller deletes
    /// both from it.
    pub(crate) fn drop_expired(
        &mut self,
        kind: WindowedStoreKind,
        expired: i64,
    ) -> (Vec<Windowed<K>>, Vec<Vec<u8>>) {
        if self.disk.is_none() {
            // A sweep still under way has dropped what is older; this one drops the rest.
            self.memory_sweep = Some(MemorySweep {
                until: expired,
                after: None,
            });
            return (self.memory_sweep_step(kind), Vec::new());
        }
        let live = |key: &Windowed<K>| kind.time_of(&key.window) > expired;
        let mut dropped = Vec::new();
        self.map.retain(|key, _| {
            let keep = live(key);
            if !keep {
                dropped.push(key.clone());
            }
            keep
        });
        let Some(disk) = &mut self.disk else {
            return (dropped, Vec::new());
        };
        // The clean ones are in the local state, whose walk below finds them: only those
        // updated since the commit are returned, to be deleted after it writes them.
        dropped.retain(|key| disk.meta.get(key) == Some(&Meta::Dirty));
        let mut clean = disk.clean;
        disk.meta.retain(|key, meta| {
            let keep = live(key);
            if !keep && matches!(meta, Meta::Clean { .. }) {
                clean -= 1;
            }
            keep
        });
        disk.clean = clean;
        // A sweep still under way has found what is older; this one finds the rest.
        disk.sweep = Some(Sweep {
            until: expired,
            after: None,
        });
        let stored = disk.sweep_step(kind);
        (dropped, stored)
    }

    /// The next step of the sweep [`StoreEntries::drop_expired`] started, if it is not done:
    /// what it dropped, as `drop_expired` returns it.
    pub(crate) fn continue_sweep(
        &mut self,
        kind: WindowedStoreKind,
    ) -> (Vec<Windowed<K>>, Vec<Vec<u8>>) {
        match &mut self.disk {
            Some(disk) => (Vec::new(), disk.sweep_step(kind)),
            None => (self.memory_sweep_step(kind), Vec::new()),
        }
    }

    /// One step of the in-memory sweep under way: drops the expired windows among the next
    /// [`SWEEP_STEP`] keys and returns them.
    fn memory_sweep_step(&mut self, kind: WindowedStoreKind) -> Vec<Windowed<K>> {
        let Self {
            map, memory_sweep, ..
        } = self;
        let Some(sweep) = memory_sweep else {
            return Vec::new();
        };
        let start = match &sweep.after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let mut visited = 0;
        let mut last = None;
        let mut expired = Vec::new();
        for (key, _) in map.range((start, Bound::Unbounded)).take(SWEEP_STEP) {
            visited += 1;
            if kind.time_of(&key.window) <= sweep.until {
                expired.push(key.clone());
            }
            last = Some(key);
        }
        let next = (visited == SWEEP_STEP).then(|| last.cloned()).flatten();
        for key in &expired {
            map.remove(key);
        }
        match next {
            Some(after) => sweep.after = Some(after),
            None => *memory_sweep = None,
        }
        expired
    }
}

impl<K: Ord + Clone, V> DiskStore<Windowed<K>, V> {
    /// The windows of `key` whose time (`kind`'s) lies in `[from, to]` in the local state.
    fn read_windows(
        &mut self,
        kind: WindowedStoreKind,
        key: &K,
        from: i64,
        to: i64,
    ) -> Vec<(Windowed<K>, (V, i64))> {
        self.reading(|state, store, codec| {
            // The key's bytes: its changelog key without the times that follow them.
            let suffix = kind.times_len();
            let probe = Windowed {
                key: key.clone(),
                window: Window { start: 0, end: 0 },
            };
            let mut prefix = codec.write_key(&probe)?;
            prefix.truncate(prefix.len().saturating_sub(suffix));
            let bound = |time: i64, fill: u8| {
                let mut bound = prefix.clone();
                bound.extend_from_slice(&time.to_be_bytes());
                bound.resize(prefix.len() + suffix, fill);
                bound
            };
            let mut found = Vec::new();
            for (low, high) in byte_order_ranges(from, to) {
                for (raw, value) in state.range(store, &bound(low, 0), &bound(high, 0xFF))? {
                    // Between the bounds lie longer keys that begin with this one's bytes.
                    if raw.len() == prefix.len() + suffix && raw.starts_with(&prefix) {
                        found.push((codec.read_key(&raw)?, codec.read_value(&value)?));
                    }
                }
            }
            Ok(found)
        })
    }

    /// One step of the sweep under way: the expired keys among the next [`SWEEP_STEP`] keys
    /// of the local state. A failed read ends the sweep (the failure stops the task).
    fn sweep_step(&mut self, kind: WindowedStoreKind) -> Vec<Vec<u8>> {
        let Some(Sweep { until, after }) = self.sweep.take() else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        let next = self.reading(|state, store, _| {
            state.visit_keys_after(store, after.as_deref(), SWEEP_STEP, |raw| {
                if kind
                    .time_in_changelog_key(raw)
                    .is_some_and(|time| time <= until)
                {
                    keys.push(raw.to_vec());
                }
            })
        });
        self.sweep = next.map(|after| Sweep {
            until,
            after: Some(after),
        });
        keys
    }
}

impl<K: Ord + Clone, V> DiskStore<K, V> {
    fn read(&mut self, key: &K) -> Option<(V, i64)> {
        self.reading(|state, store, codec| {
            state
                .get(store, &codec.write_key(key)?)?
                .map(|value| codec.read_value(&value))
                .transpose()
        })
    }

    /// Every entry the local state holds, in the database's order (by key bytes).
    fn read_all(&mut self) -> Vec<(K, (V, i64))> {
        self.reading(|state, store, codec| {
            let mut entries = Vec::new();
            for (_, records) in state.load(&[store.to_string()])? {
                for (key, value) in records {
                    entries.push((codec.read_key(&key)?, codec.read_value(&value)?));
                }
            }
            Ok(entries)
        })
    }

    /// What `read` gets from the local state; on an error, nothing, and the error kept for
    /// the task.
    fn reading<T: Default>(
        &mut self,
        read: impl FnOnce(&TaskState, &str, &dyn KeyValueCodec<K, V>) -> Result<T, Error>,
    ) -> T {
        let result = match self.state.upgrade() {
            Some(state) => read(&state, &self.store, &*self.codec),
            None => Err(Error::StoreClosed(self.store.clone())),
        };
        result.unwrap_or_else(|error| {
            self.fail(error);
            T::default()
        })
    }

    fn fail(&mut self, error: Error) {
        tracing::error!(store = %self.store, %error, "persistent state store read failed");
        self.failed.get_or_insert(error);
    }

    /// The database's value of `key`, unless the key was updated or deleted since the last
    /// commit (then the database's value is not the one replaced).
    fn read_unless_known(&mut self, key: &K) -> Option<(V, i64)> {
        match self.meta.get(key) {
            Some(Meta::Dirty) => None,
            // Cached, so `map` had it: not reached.
            Some(Meta::Clean { .. }) => None,
            None => self.read(key),
        }
    }

    /// `key` was updated or deleted: the database no longer has its value.
    fn mark_dirty(&mut self, key: K) {
        match self.meta.insert(key.clone(), Meta::Dirty) {
            Some(Meta::Dirty) => {}
            Some(Meta::Clean { .. }) => {
                self.clean -= 1;
                self.dirty.push(key);
            }
            None => self.dirty.push(key),
        }
    }

    /// Drops what is known of `key`: its value is to be read from the database again.
    fn forget(&mut self, key: &K) {
        if let Some(Meta::Clean { .. }) = self.meta.remove(key) {
            self.clean -= 1;
        }
    }

    /// Queues `key` for eviction as just used; returns its `Meta`, for the caller to store.
    fn queue(&mut self, key: K) -> Meta {
        // Stale entries are dropped as eviction meets them; keep them from piling up under
        // a cache that never fills (keys updated at every commit are queued at every one).
        // Before the push: the new entry's key does not have its `Meta` yet.
        if self.uses.len() > 2 * self.clean + 64 {
            let meta = &self.meta;
            self.uses.retain(
                |(tick, key)| matches!(meta.get(key), Some(Meta::Clean { queued, .. }) if queued == tick),
            );
        }
        self.clock += 1;
        self.uses.push_back((self.clock, key));
        Meta::Clean {
            queued: self.clock,
            used: self.clock,
        }
    }

    /// `key`, just read from the database, is cached.
    fn cache(&mut self, key: K) {
        let meta = self.queue(key.clone());
        self.meta.insert(key, meta);
        self.clean += 1;
    }

    /// Marks `key`, which `map` holds, as just used.
    fn touch(&mut self, key: &K) {
        if let Some(Meta::Clean { used, .. }) = self.meta.get_mut(key) {
            self.clock += 1;
            *used = self.clock;
        }
    }

    /// The database now holds every update: the dirty keys become clean (most recently
    /// used), the deleted ones are forgotten, and the cache is cut to its bound.
    fn committed(&mut self, map: &mut Entries<K, V>) {
        for key in std::mem::take(&mut self.dirty) {
            if self.meta.get(&key) != Some(&Meta::Dirty) {
                // Forgotten or expired since, or already visited.
                continue;
            }
            if map.contains_key(&key) {
                let meta = self.queue(key.clone());
                self.meta.insert(key, meta);
                self.clean += 1;
            } else {
                self.meta.remove(&key);
            }
        }
        self.evict(map);
    }

    /// Drops the least recently used clean entries from `map` beyond `max_cached`.
    fn evict(&mut self, map: &mut Entries<K, V>) {
        while self.clean > self.max_cached {
            let Some((tick, key)) = self.uses.pop_front() else {
                break;
            };
            let Some(Meta::Clean { queued, used }) = self.meta.get_mut(&key) else {
                continue;
            };
            if *queued != tick {
                continue;
            }
            if *used > *queued {
                // Used since it was queued: a second chance, at the back.
                *queued = *used;
                self.uses.push_back((*used, key));
                continue;
            }
            self.meta.remove(&key);
            self.clean -= 1;
            map.remove(&key);
        }
    }
}

/// A persistent-capable key-value store, as the task sees it whatever its types.
pub(crate) trait PersistentStore: Send + Sync {
    /// Serves the store from `state` from now on, keeping at most `max_cached` clean entries
    /// in memory. The store must be empty (a new task's, before its restore), or hold what
    /// `state` holds plus the updates since its last commit (a standby's, promoted).
    fn attach(&self, state: &Arc<TaskState>, max_cached: usize);
    /// The local state now holds every update made so far: they become clean, and the
    /// cache is cut to its bound.
    fn committed(&self);
    /// The first failed read of the store, if any.
    fn take_failure(&self) -> Option<Error>;
    /// How many entries the store holds in memory.
    fn entries_in_memory(&self) -> u64;
    /// Stops serving the store from its local state: every entry is read into memory (the
    /// local state is about to be deleted). Fails if the local state does not read.
    fn detach(&self) -> Result<(), Error>;
}

struct Persistent<K, V> {
    store: SharedStore<K, V>,
    name: String,
    codec: Arc<dyn KeyValueCodec<K, V>>,
    /// A window or session store's kind and retention.
    windowed: Option<WindowedRetention>,
}

/// What a persistent window or session store needs when it is attached: the latest time its
/// local state holds is the one its retention counts from (a restore from the changelog
/// moves it with each record; the local state is not restored record by record).
pub(crate) struct WindowedRetention {
    pub(crate) kind: WindowedStoreKind,
    pub(crate) retention: Arc<Mutex<Retention>>,
}

impl<K: Ord + Clone + Send + 'static, V: Clone + Send + 'static> PersistentStore
    for Persistent<K, V>
{
    fn attach(&self, state: &Arc<TaskState>, max_cached: usize) {
        let mut guard = self.store.lock();
        let StoreEntries {
            map,
            disk,
            memory_sweep,
        } = &mut *guard;
        // The local state's sweep takes over: it walks the entries of `map` too.
        *memory_sweep = None;
        let attached_before = disk.is_some();
        let (meta, clean, uses, clock, dirty) = match disk.take() {
            // Attached again: what it knew still holds.
            Some(old) => (old.meta, old.clean, old.uses, old.clock, old.dirty),
            // What the store holds already is not in the database until the next commit.
            None => (
                map.keys().map(|key| (key.clone(), Meta::Dirty)).collect(),
                0,
                VecDeque::new(),
                0,
                map.keys().cloned().collect(),
            ),
        };
        *disk = Some(Box::new(DiskStore {
            state: Arc::downgrade(state),
            store: self.name.clone(),
            codec: Arc::clone(&self.codec),
            max_cached,
            meta,
            clean,
            uses,
            clock,
            dirty,
            failed: None,
            // A sweep starts over at the next one due.
            sweep: None,
        }));
        if let (Some(windowed), false) = (&self.windowed, attached_before) {
            let mut latest = None;
            let read = state.visit_keys(&self.name, |raw| {
                latest = latest.max(windowed.kind.time_in_changelog_key(raw));
            });
            match (read, disk) {
                (Err(error), Some(disk)) => disk.fail(error),
                _ => {
                    if let Some(time) = latest {
                        windowed.retention.lock().observe(time);
                    }
                }
            }
        }
    }

    fn committed(&self) {
        let mut guard = self.store.lock();
        let StoreEntries { map, disk, .. } = &mut *guard;
        if let Some(disk) = disk {
            disk.committed(map);
        }
    }

    fn take_failure(&self) -> Option<Error> {
        self.store.lock().disk.as_mut()?.failed.take()
    }

    fn entries_in_memory(&self) -> u64 {
        self.store.lock().map.len() as u64
    }

    fn detach(&self) -> Result<(), Error> {
        let mut guard = self.store.lock();
        let StoreEntries { map, disk, .. } = &mut *guard;
        let Some(mut disk) = disk.take() else {
            return Ok(());
        };
        for (key, value) in disk.read_all() {
            // A key updated or deleted since the last commit has its value in `map`, or none.
            if disk.meta.get(&key) != Some(&Meta::Dirty) {
                map.insert(key, value);
            }
        }
        disk.failed.take().map_or(Ok(()), Err)
    }
}

/// The handle on `store` that serves it from the table `name` of a local state, whose
/// records are a changelog's: keys written with `key_serde`, values in `format`.
pub(crate) fn persistent_store<K, V>(
    name: &str,
    store: &SharedStore<K, V>,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    format: ValueFormat,
) -> Arc<dyn PersistentStore>
where
    K: Ord + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    Arc::new(Persistent {
        store: Arc::clone(store),
        name: name.to_string(),
        codec: Arc::new(ChangelogCodec {
            key_serde,
            value_serde,
            format,
        }),
        windowed: None,
    })
}

/// Registers `store`, a logged key-value store named `name` whose changelog writes its keys
/// with `key_serde` and its values in `format`, as one a task with local state serves from
/// it ([`persistent_store`]).
pub(crate) fn register_persistent_store<K, V>(
    state: &mut BuilderState,
    name: &str,
    store: &SharedStore<K, V>,
    (key_serde, value_serde): (SerdeRef<K>, SerdeRef<V>),
    format: ValueFormat,
) where
    K: Ord + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    let persistent = persistent_store(name, store, key_serde, value_serde, format);
    state.persistent_stores.insert(name.to_string(), persistent);
}

/// Registers `store`, the logged window or session store `name` (values in `format`: the
/// DSL's are timestamped, the processor API's plain; keys in Kafka's windowed formats), as
/// one a task with local state serves from it.
pub(crate) fn register_persistent_windowed_store<K, V>(
    state: &mut BuilderState,
    name: &str,
    store: &SharedStore<Windowed<K>, V>,
    (key_serde, value_serde): (SerdeRef<Windowed<K>>, SerdeRef<V>),
    (windowed, format): (WindowedRetention, ValueFormat),
) where
    K: Ord + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    let persistent = Persistent {
        store: Arc::clone(store),
        name: name.to_string(),
        codec: Arc::new(ChangelogCodec {
            key_serde,
            value_serde,
            format,
        }),
        windowed: Some(windowed),
    };
    state
        .persistent_stores
        .insert(name.to_string(), Arc::new(persistent));
}

/// A read-only view of a key-value state store (Kafka's `ReadOnlyKeyValueStore`). Reads see
/// the store as it is at the time of the read. On [`KafkaStreams`](crate::KafkaStreams) it
/// spans the store of every task the instance had when the view was taken (the tasks hold
/// disjoint keys).
pub struct ReadOnlyKeyValueStore<K, V> {
    pub(crate) name: String,
    pub(crate) entries: Vec<SharedStore<K, V>>,
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
        self.get_with_timestamp(key).map(|(value, _)| value)
    }

    /// The value for `key` and the timestamp of its last update.
    pub fn get_with_timestamp(&self, key: &K) -> Option<(V, i64)> {
        self.entries
            .iter()
            .find_map(|entries| entries.lock().get(key))
    }

    /// Every entry, sorted by key.
    pub fn all(&self) -> Vec<(K, V)> {
        self.range_by(..)
    }

    /// The entries with `from <= key <= to`, sorted by key.
    pub fn range(&self, from: &K, to: &K) -> Vec<(K, V)> {
        self.range_by((Bound::Included(from), Bound::Included(to)))
    }

    /// The entries with keys in `keys`, sorted by key. Either end may be open (Kafka's
    /// `range(null, to)`, `range(from, null)`): `store.range_by(..=to)`,
    /// `store.range_by((Bound::Excluded(&a), Bound::Unbounded))`. Empty when the range is.
    pub fn range_by<'k>(&self, keys: impl RangeBounds<&'k K>) -> Vec<(K, V)>
    where
        K: 'k,
    {
        let (from, to) = (keys.start_bound().cloned(), keys.end_bound().cloned());
        if is_empty_range(from, to) {
            return Vec::new();
        }
        let owned = (from.cloned(), to.cloned());
        let mut found: Vec<(K, V)> = self
            .entries
            .iter()
            .flat_map(|entries| entries.lock().range(owned.clone()))
            .map(|(k, (v, _))| (k, v))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// [`ReadOnlyKeyValueStore::range_by`], in reverse key order (Kafka's `reverseRange`).
    pub fn reverse_range_by<'k>(&self, keys: impl RangeBounds<&'k K>) -> Vec<(K, V)>
    where
        K: 'k,
    {
        let mut found = self.range_by(keys);
        found.reverse();
        found
    }

    /// Every entry, in reverse key order (Kafka's `reverseAll`).
    pub fn reverse_all(&self) -> Vec<(K, V)> {
        let mut all = self.all();
        all.reverse();
        all
    }

    /// How many keys the store holds (exact for an in-memory store; for a persistent one, a
    /// key updated since the last commit may count twice).
    pub fn approximate_num_entries(&self) -> u64 {
        self.entries
            .iter()
            .map(|entries| entries.lock().len())
            .sum()
    }
}

/// A `Serde<V>` from a `Serde<Option<V>>` (a table's value serde), for changelogs, which
/// write only present values (a deletion is a tombstone).
pub(crate) struct SomeOf<V>(pub(crate) SerdeRef<Option<V>>);

impl<V: Clone + 'static> Serde<V> for SomeOf<V> {
    fn serialize(&self, value: &V) -> Result<Vec<u8>, Error> {
        self.0
            .serialize_nullable(&Some(value.clone()))?
            .ok_or(Error::NullData)
    }

    fn deserialize(&self, data: &[u8]) -> Result<V, Error> {
        self.0
            .deserialize_nullable(Some(data))?
            .ok_or(Error::NullData)
    }
}

/// How a store's value is held inside a task and in its local state, as Kafka's store kinds
/// hold it (the changelog topic holds it as Kafka's changelogs do: see
/// [`changelog_value_to_kafka`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueFormat {
    /// The DSL's timestamped stores (KIP-258): the 8-byte big-endian timestamp of the last
    /// update, then the serialized value.
    Timestamped,
    /// A plain key-value store (`Stores.keyValueStoreBuilder`), which keeps no timestamp: the
    /// serialized value alone.
    Plain,
}

/// The timestamp a plain store's entries carry: it keeps none.
pub(crate) const NO_TIMESTAMP: i64 = -1;

/// Registers the changelog topic `<store>-changelog` of the store `store_name`, and
/// `restorer`, which puts its records back into the store; returns the topic's name (without
/// the application id). Every logged store, whatever its kind, is restored through this.
pub(crate) fn register_changelog(
    state: &mut BuilderState,
    store_name: &str,
    restorer: Restorer,
) -> String {
    let topic = format!("{store_name}-changelog");
    state.internal_topics.insert(InternalTopic {
        name: topic.clone(),
        kind: InternalTopicKind::Changelog,
    });
    state.restorers.insert(store_name.to_string(), restorer);
    topic
}

/// Registers the changelog of a key-value store whose values are in `format`, and the way to
/// restore the store from it; returns the topic's name (without the application id).
pub(crate) fn logged_store<K: Ord + Clone + Send + 'static, V: Clone + Send + 'static>(
    state: &mut BuilderState,
    store_name: &str,
    store: &SharedStore<K, V>,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    format: ValueFormat,
) -> String {
    if format == ValueFormat::Timestamped {
        state.timestamped_changelogs.insert(store_name.to_string());
    }
    let store = Arc::clone(store);
    let restorer: Restorer = Box::new(move |key, value| {
        // Changelog records always have a key; a record without one is not ours to restore.
        let Some(key) = key else {
            return Ok(());
        };
        let key = key_serde.deserialize(key)?;
        let mut entries = store.lock();
        if let Some(disk) = &mut entries.disk {
            // The restore writes the record into the local state before the task reads the
            // store (`LocalWriter`): the store only drops what it cached of the key.
            disk.forget(&key);
            entries.map.remove(&key);
            return Ok(());
        }
        let value = value
            .map(|data| decode_value(format, &*value_serde, data))
            .transpose()?;
        entries.put(key, value);
        Ok(())
    });
    register_changelog(state, store_name, restorer)
}

/// The error of a changelog record's `part` ("key" or "value") that did not serialize.
pub(crate) fn serialize_failed(topic: &str, part: &'static str, source: Error) -> Error {
    Error::Serialize {
        topic: topic.to_string(),
        part,
        source: Box::new(source),
    }
}

/// A changelog record's key, serialized; the error names the changelog.
pub(crate) fn serialize_key<K>(
    topic: &str,
    serde: &(impl Serde<K> + ?Sized),
    key: &K,
) -> Result<Vec<u8>, Error> {
    serde
        .serialize(key)
        .map_err(|e| serialize_failed(topic, "key", e))
}

/// One update of a key-value store as a changelog record's key and value (in `format`), or a
/// tombstone for a deleted key.
pub(crate) fn encode_change<K, V>(
    topic: &str,
    (key_serde, value_serde): (&(impl Serde<K> + ?Sized), &(impl Serde<V> + ?Sized)),
    key: &K,
    value: Option<&V>,
    (format, timestamp): (ValueFormat, i64),
) -> Result<(Vec<u8>, Option<Vec<u8>>), Error> {
    let key = serialize_key(topic, key_serde, key)?;
    let value = value
        .map(|value| encode_value(format, value_serde, value, timestamp))
        .transpose()
        .map_err(|e| serialize_failed(topic, "value", e))?;
    Ok((key, value))
}

/// Writes one update of a logged timestamped store to its changelog, on the task's
/// partition: the serialized key, and the value after its 8-byte timestamp (which the runtime
/// drops when it produces: [`changelog_value_to_kafka`]), or a tombstone for a deleted key.
pub(crate) fn write_changelog<K, V>(
    ctx: &mut Context,
    topic: &str,
    key_serde: &(impl Serde<K> + ?Sized),
    value_serde: &(impl Serde<V> + ?Sized),
    key: &K,
    value: Option<&V>,
    timestamp: i64,
) -> Result<(), Error> {
    let (key, value) = encode_change(
        topic,
        (key_serde, value_serde),
        key,
        value,
        (ValueFormat::Timestamped, timestamp),
    )?;
    log_change(ctx, topic, key, value, timestamp);
    Ok(())
}

/// Writes one changelog record, already serialized, on the task's partition. The record is
/// one of the task's outputs, so the at-least-once commit waits for it too.
pub(crate) fn log_change(
    ctx: &mut Context,
    topic: &str,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    timestamp: i64,
) {
    ctx.outputs.push(RawRecord {
        topic: topic.to_string(),
        partition: ctx.partition,
        offset: -1,
        key: Some(Bytes::from(key)),
        value: value.map(Bytes::from),
        timestamp,
    });
}

/// A timestamped store's changelog value as Kafka's changelog holds it: the value alone, its
/// timestamp being the record's (Kafka's `ChangeLoggingTimestampedKeyValueBytesStore` logs the
/// raw value with the timestamp as the record's). Inside a task, and in its local state (as in
/// Kafka's RocksDB timestamped stores), the value keeps its 8-byte timestamp first: the
/// runtime converts at the boundary, with this when it produces and [`timestamped_value`]
/// (the record's timestamp back in front) when it restores.
pub(crate) fn changelog_value_to_kafka(value: Bytes) -> Bytes {
    if value.len() >= 8 {
        value.slice(8..)
    } else {
        value
    }
}

/// A timestamped value as a task and its local state hold it: the 8-byte big-endian
/// timestamp, then the value's bytes (see [`changelog_value_to_kafka`]).
pub(crate) fn timestamped_value(timestamp: i64, value: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(8 + value.len());
    data.extend_from_slice(&timestamp.to_be_bytes());
    data.extend_from_slice(value);
    data
}

/// The timestamp and the value's bytes of a [`timestamped_value`]; an error for data shorter
/// than its timestamp.
pub(crate) fn split_timestamped_value(data: &[u8]) -> Result<(i64, &[u8]), Error> {
    let (timestamp, value) = data.split_first_chunk::<8>().ok_or(Error::DataSize {
        expected: 8,
        actual: data.len(),
    })?;
    Ok((i64::from_be_bytes(*timestamp), value))
}

/// A changelog value in `format` (a serde that writes a null gives an empty value).
pub(crate) fn encode_value<V>(
    format: ValueFormat,
    serde: &(impl Serde<V> + ?Sized),
    value: &V,
    timestamp: i64,
) -> Result<Vec<u8>, Error> {
    let mut data = match format {
        ValueFormat::Timestamped => timestamp.to_be_bytes().to_vec(),
        ValueFormat::Plain => Vec::new(),
    };
    if let Some(bytes) = serde.serialize_nullable(value)? {
        data.extend_from_slice(&bytes);
    }
    Ok(data)
}

/// A changelog value in `format`: the value and its timestamp ([`NO_TIMESTAMP`] for a plain
/// store). An empty value is the serde's null when it has one.
pub(crate) fn decode_value<V: 'static>(
    format: ValueFormat,
    serde: &dyn Serde<V>,
    data: &[u8],
) -> Result<(V, i64), Error> {
    let (timestamp, value) = match format {
        ValueFormat::Timestamped => split_timestamped_value(data)?,
        ValueFormat::Plain => (NO_TIMESTAMP, data),
    };
    let value = if value.is_empty() {
        serde
            .deserialize_nullable(None)
            .or_else(|_| serde.deserialize(value))?
    } else {
        serde.deserialize(value)?
    };
    Ok((value, timestamp))
}

/// A window store's changelog key with duplicates retained (Kafka's `WindowKeySchema`
/// store key, as the stream-stream join buffers write it): the serialized key, the record's
/// 8-byte big-endian timestamp, then a 4-byte big-endian sequence number that keeps records
/// of one key and timestamp apart.
pub(crate) fn window_store_key(key: &[u8], timestamp: i64, seqnum: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity(key.len() + 12);
    data.extend_from_slice(key);
    data.extend_from_slice(&timestamp.to_be_bytes());
    data.extend_from_slice(&seqnum.to_be_bytes());
    data
}

/// The parts of a [`window_store_key`]: serialized key, timestamp, sequence number.
pub(crate) fn split_window_store_key(data: &[u8]) -> Result<(&[u8], i64, u32), Error> {
    let Some((rest, seqnum)) = data.split_last_chunk::<4>() else {
        return Err(Error::DataSize {
            expected: 12,
            actual: data.len(),
        });
    };
    let Some((key, timestamp)) = rest.split_last_chunk::<8>() else {
        return Err(Error::DataSize {
            expected: 12,
            actual: data.len(),
        });
    };
    Ok((
        key,
        i64::from_be_bytes(*timestamp),
        u32::from_be_bytes(*seqnum),
    ))
}

/// Whether no key lies between `from` and `to`, so that asking a `BTreeMap` for the range
/// (which panics on a start above its end) is skipped.
pub(crate) fn is_empty_range<K: Ord>(from: Bound<&K>, to: Bound<&K>) -> bool {
    match (from, to) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use crate::topology::{DeserializationExceptionHandler, RawRecord, Task, Topology};
    use crate::{
        Nullable, SessionWindows, SlidingWindows, StreamsBuilder, StringSerde, TumblingWindows,
        Window, Windowed,
    };

    fn topology() -> Topology {
        let builder = StreamsBuilder::new();
        let stream = builder.stream("in", StringSerde, StringSerde);
        stream.group_by_key().materialized_as("counts").count();
        stream
            .group_by_key()
            .windowed_by(TumblingWindows::of(Duration::from_millis(100)))
            .materialized_as("windowed")
            .count();
        stream
            .group_by_key()
            .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(
                Duration::from_millis(50),
            ))
            .materialized_as("sessions")
            .count();
        stream
            .group_by_key()
            .windowed_by_sliding(SlidingWindows::of_time_difference_with_no_grace(
                Duration::from_millis(100),
            ))
            .materialized_as("sliding")
            .count();
        builder.table("t", StringSerde, Nullable(StringSerde));
        builder.build().unwrap()
    }

    fn record(topic: &str, key: &str, value: Option<&str>, timestamp: i64) -> RawRecord {
        RawRecord {
            topic: topic.to_string(),
            partition: 2,
            offset: 0,
            key: Some(bytes::Bytes::from(key.to_string())),
            value: value.map(|v| bytes::Bytes::from(v.to_string())),
            timestamp,
        }
    }

    /// What a task logs to its changelogs, replayed into a new task, gives it the same
    /// stores: key-value, time-window and table stores, deletions included.
    #[test]
    fn a_task_restored_from_its_changelog_records_has_the_same_stores() {
        let handler = DeserializationExceptionHandler::default;
        let mut task = Task::new(topology(), 2, handler());
        for (key, timestamp) in [("a", 10), ("b", 20), ("a", 40), ("a", 150)] {
            task.process(&record("in", key, Some("x"), timestamp))
                .unwrap();
        }
        task.process(&record("t", "k1", Some("v1"), 5)).unwrap();
        task.process(&record("t", "k2", Some("v2"), 6)).unwrap();
        task.process(&record("t", "k1", None, 7)).unwrap();
        let changelog = task.take_outputs();
        assert!(
            changelog.iter().all(|r| r.partition == 2),
            "the task's partition"
        );

        let mut restored = Task::new(topology(), 2, handler());
        for record in &changelog {
            let store = record.topic.trim_end_matches("-changelog");
            restored
                .restore(store, record.key.as_deref(), record.value.as_deref())
                .unwrap();
        }
        let counts = restored.topology().key_value_store::<String, i64>("counts");
        assert_eq!(
            counts.unwrap().all(),
            vec![("a".to_string(), 3), ("b".to_string(), 1)]
        );
        let windowed = restored
            .topology()
            .key_value_store::<Windowed<String>, i64>("windowed")
            .unwrap();
        let window = |start| Window {
            start,
            end: start + 100,
        };
        assert_eq!(
            windowed.get_with_timestamp(&Windowed {
                key: "a".to_string(),
                window: window(100)
            }),
            Some((1, 150))
        );
        assert_eq!(windowed.approximate_num_entries(), 3);
        // a@40 merged a@10's session (deleted with a tombstone) into [10, 40].
        let sessions = restored
            .topology()
            .key_value_store::<Windowed<String>, i64>("sessions")
            .unwrap()
            .all();
        let bounds: Vec<(String, i64, i64, i64)> = sessions
            .into_iter()
            .map(|(w, count)| (w.key, w.window.start, w.window.end, count))
            .collect();
        assert_eq!(
            bounds,
            vec![
                ("a".to_string(), 10, 40, 2),
                ("a".to_string(), 150, 150, 1),
                ("b".to_string(), 20, 20, 1)
            ]
        );
        let sliding = |task: &Task| {
            task.topology()
                .key_value_store::<Windowed<String>, i64>("sliding")
                .unwrap()
                .all()
        };
        assert!(sliding(&task).len() > 3, "{:?}", sliding(&task));
        assert_eq!(sliding(&restored), sliding(&task));
        let table_store = restored.topology().store_names();
        let table_store = table_store
            .iter()
            .find(|name| name.starts_with("t-STATE-STORE"))
            .unwrap();
        let table = restored
            .topology()
            .key_value_store::<String, String>(table_store)
            .unwrap();
        assert_eq!(table.all(), vec![("k2".to_string(), "v2".to_string())]);
    }

    /// The same changelog records through a task's local state: written in changelog order
    /// over two commits, the database reopened and loaded, they give the stores a restore
    /// from the whole changelog gives (the latest record per key is all a store needs:
    /// key-value, window, session and sliding stores and a table with a deletion).
    #[test]
    fn a_task_restored_from_its_local_state_has_the_same_stores() {
        use std::collections::HashMap;

        use crate::state::{LocalRecord, TaskState, try_lock};

        let handler = DeserializationExceptionHandler::default;
        let mut task = Task::new(topology(), 2, handler());
        for (key, timestamp) in [("a", 10), ("b", 20), ("a", 40), ("a", 150), ("b", 160)] {
            task.process(&record("in", key, Some("x"), timestamp))
                .unwrap();
        }
        task.process(&record("t", "k1", Some("v1"), 5)).unwrap();
        task.process(&record("t", "k2", Some("v2"), 6)).unwrap();
        task.process(&record("t", "k1", None, 7)).unwrap();
        let records: Vec<LocalRecord> = task
            .take_outputs()
            .into_iter()
            .map(|r| {
                let store = r.topic.trim_end_matches("-changelog").to_string();
                (store, r.key.unwrap(), r.value)
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let task_dir = dir.path().join("2");
        let checkpoint = |offset| HashMap::from([("app-counts-changelog".to_string(), offset)]);
        {
            let lock = try_lock(&task_dir).unwrap().unwrap();
            assert!(try_lock(&task_dir).unwrap().is_none(), "locked once");
            let (state, wiped) = TaskState::open(task_dir.clone(), lock).unwrap();
            assert!(!wiped);
            let (first, second) = records.split_at(records.len() / 2);
            state.commit(first, &checkpoint(7)).unwrap();
            state.commit(second, &checkpoint(19)).unwrap();
            state.persist().unwrap();
        }
        let lock = try_lock(&task_dir).unwrap().unwrap();
        let (state, wiped) = TaskState::open(task_dir, lock).unwrap();
        assert!(!wiped);
        assert_eq!(state.checkpoints().unwrap(), checkpoint(19));
        let stores: Vec<String> = task.topology().restorers.keys().cloned().collect();
        let loaded = state.load(&stores).unwrap();
        let count: usize = loaded.iter().map(|(_, records)| records.len()).sum();
        assert!(count < records.len(), "one record per key");
        let mut restored = Task::new(topology(), 2, handler());
        for (store, records) in &loaded {
            for (key, value) in records {
                restored.restore(store, Some(key), Some(value)).unwrap();
            }
        }
        // What the runtime restores without local state: every changelog record. (Not the
        // running task's stores: windows and sessions dropped by retention are not logged.)
        let mut task = Task::new(topology(), 2, handler());
        for (store, key, value) in &records {
            task.restore(store, Some(key), value.as_deref()).unwrap();
        }
        let all = |task: &Task, store: &str| {
            task.topology()
                .key_value_store::<Windowed<String>, i64>(store)
                .unwrap()
                .all()
        };
        for store in ["windowed", "sessions", "sliding"] {
            assert!(!all(&task, store).is_empty());
            assert_eq!(all(&restored, store), all(&task, store), "{store}");
        }
        let counts = |task: &Task| {
            task.topology()
                .key_value_store::<String, i64>("counts")
                .unwrap()
                .all()
        };
        assert_eq!(counts(&restored), counts(&task));
        let table_store = task.topology().store_names();
        let table_store = table_store
            .iter()
            .find(|name| name.starts_with("t-STATE-STORE"))
            .unwrap();
        let table = restored
            .topology()
            .key_value_store::<String, String>(table_store)
            .unwrap();
        assert_eq!(table.all(), vec![("k2".to_string(), "v2".to_string())]);
    }

    /// A join buffer's changelog key is Kafka's window-store key with duplicates retained:
    /// key, 8-byte timestamp, 4-byte seqnum, all big-endian; it splits back into its parts.
    #[test]
    fn window_store_keys_are_kafkas_format_and_round_trip() {
        use super::{split_window_store_key, window_store_key};

        let key = window_store_key(b"a", 1_000, 1);
        assert_eq!(key, [b'a', 0, 0, 0, 0, 0, 0, 0x03, 0xE8, 0, 0, 0, 1]);
        assert_eq!(split_window_store_key(&key).unwrap(), (&b"a"[..], 1_000, 1));
        let key = window_store_key(b"", -1, u32::MAX >> 1);
        assert_eq!(
            split_window_store_key(&key).unwrap(),
            (&b""[..], -1, 0x7FFF_FFFF)
        );
        assert!(split_window_store_key(&[0; 11]).is_err(), "too short");
    }

    /// A persistent store against a real local state: the database holds what was
    /// "committed" (written as the runtime writes a commit's changelog records), memory holds
    /// what changed since and at most the cache bound of the rest.
    mod persistent {
        use std::collections::HashMap;
        use std::sync::Arc;

        use bytes::Bytes;

        use super::super::{
            ChangelogCodec, Persistent, PersistentStore, SharedStore, ValueFormat, encode_value,
            new_store,
        };
        use crate::state::{LocalRecord, TaskState, try_lock};
        use crate::{I64Serde, StringSerde};

        struct Fixture {
            _dir: tempfile::TempDir,
            state: Arc<TaskState>,
            store: SharedStore<String, i64>,
            handle: Persistent<String, i64>,
        }

        fn fixture(max_cached: usize) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let task_dir = dir.path().join("0");
            let lock = try_lock(&task_dir).unwrap().unwrap();
            let (state, _) = TaskState::open(task_dir, lock).unwrap();
            let state = Arc::new(state);
            let store = new_store();
            let handle = Persistent {
                store: Arc::clone(&store),
                name: "counts".to_string(),
                codec: Arc::new(ChangelogCodec {
                    key_serde: Arc::new(StringSerde),
                    value_serde: Arc::new(I64Serde),
                    format: ValueFormat::Timestamped,
                }),
                windowed: None,
            };
            handle.attach(&state, max_cached);
            Fixture {
                _dir: dir,
                state,
                store,
                handle,
            }
        }

        fn record(key: &str, value: Option<i64>) -> LocalRecord {
            let value = value.map(|v| {
                Bytes::from(encode_value(ValueFormat::Timestamped, &I64Serde, &v, v).unwrap())
            });
            ("counts".to_string(), Bytes::from(key.to_string()), value)
        }

        /// What the runtime does at a commit: the changelog records to the local state,
        /// then the store told.
        fn commit(f: &Fixture, records: &[LocalRecord]) {
            f.state.commit(records, &HashMap::new()).unwrap();
            f.handle.committed();
        }

        #[test]
        fn a_store_larger_than_its_cache_reads_the_rest_from_the_local_state() {
            let f = fixture(10);
            let keys: Vec<String> = (0..100).map(|i| format!("k{i:03}")).collect();
            let mut records = Vec::new();
            for (i, key) in keys.iter().enumerate() {
                let value = i64::try_from(i).unwrap();
                f.store.lock().insert(key.clone(), (value, value));
                records.push(record(key, Some(value)));
            }
            assert_eq!(f.handle.entries_in_memory(), 100, "dirty until the commit");
            commit(&f, &records);
            assert_eq!(f.handle.entries_in_memory(), 10, "the cache bound");
            // Every key, cached or not, reads back; the cache stays bounded.
            for (i, key) in keys.iter().enumerate() {
                let value = i64::try_from(i).unwrap();
                assert_eq!(f.store.lock().get(key), Some((value, value)), "{key}");
            }
            assert_eq!(f.handle.entries_in_memory(), 10);
            assert_eq!(f.store.lock().len(), 100);
            let all = f
                .store
                .lock()
                .range((std::ops::Bound::Unbounded, std::ops::Bound::Unbounded));
            assert_eq!(all.len(), 100);
            assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "in key order");
            assert!(f.handle.take_failure().is_none());
        }

        /// Puts 1 (at timestamp 1) for each of `keys`, in order, and commits.
        fn insert_and_commit(f: &Fixture, keys: &[&str]) {
            for key in keys {
                f.store.lock().insert((*key).to_string(), (1, 1));
            }
            let records: Vec<LocalRecord> = keys.iter().map(|k| record(k, Some(1))).collect();
            commit(f, &records);
        }

        #[derive(Debug, Clone)]
        enum Op {
            Insert(u8, i64),
            Update(u8, i64),
            Remove(u8),
            Put(u8, Option<i64>),
            Get(u8),
            Commit,
            Range(u8, u8),
        }

        fn op() -> impl proptest::strategy::Strategy<Value = Op> {
            use proptest::prelude::*;
            let key = 0..24u8;
            prop_oneof![
                (key.clone(), any::<i64>()).prop_map(|(k, v)| Op::Insert(k, v)),
                (key.clone(), any::<i64>()).prop_map(|(k, v)| Op::Update(k, v)),
                key.clone().prop_map(Op::Remove),
                (key.clone(), proptest::option::of(any::<i64>())).prop_map(|(k, v)| Op::Put(k, v)),
                key.clone().prop_map(Op::Get),
                Just(Op::Commit),
                (key.clone(), key).prop_map(|(a, b)| Op::Range(a, b)),
            ]
        }

        proptest::proptest! {
            /// Whatever the updates, lookups, commits and cache bound, a persistent store
            /// answers as a map holding every entry would, and holds in memory no more clean
            /// entries than its bound.
            #[test]
            fn a_persistent_store_answers_as_an_in_memory_one(
                ops in proptest::collection::vec(op(), 1..400),
                max_cached in 0..6usize,
            ) {
                use std::collections::BTreeMap;
                use std::ops::Bound;

                let f = fixture(max_cached);
                let mut model: BTreeMap<String, (i64, i64)> = BTreeMap::new();
                // The changelog records since the last commit, as the runtime keeps them.
                let mut logged: Vec<LocalRecord> = Vec::new();
                let name = |k: u8| format!("k{k:02}");
                for op in ops {
                    let mut store = f.store.lock();
                    match op {
                        Op::Insert(k, v) => {
                            proptest::prop_assert_eq!(
                                store.insert(name(k), (v, v)),
                                model.insert(name(k), (v, v))
                            );
                            logged.push(record(&name(k), Some(v)));
                        }
                        Op::Update(k, v) => {
                            // An aggregation's step: a sum (its own timestamp, as `record` logs).
                            let step = |old: Option<&(i64, i64)>| {
                                let sum = old.map_or(v, |(sum, _)| sum.wrapping_add(v));
                                (sum, sum)
                            };
                            let (old, put) = store.update(name(k), step);
                            let expected = model.get(&name(k)).copied();
                            let made = step(expected.as_ref());
                            model.insert(name(k), made);
                            proptest::prop_assert_eq!((old, put), (expected, made));
                            logged.push(record(&name(k), Some(made.0)));
                        }
                        Op::Remove(k) => {
                            proptest::prop_assert_eq!(store.remove(&name(k)), model.remove(&name(k)));
                            logged.push(record(&name(k), None));
                        }
                        Op::Put(k, v) => {
                            store.put(name(k), v.map(|v| (v, v)));
                            match v {
                                Some(v) => model.insert(name(k), (v, v)),
                                None => model.remove(&name(k)),
                            };
                            logged.push(record(&name(k), v));
                        }
                        Op::Get(k) => {
                            proptest::prop_assert_eq!(store.get(&name(k)), model.get(&name(k)).copied());
                        }
                        Op::Commit => {
                            drop(store);
                            commit(&f, &std::mem::take(&mut logged));
                            let cached = f.handle.entries_in_memory();
                            proptest::prop_assert!(
                                cached <= max_cached as u64,
                                "{} cached, bound {}", cached, max_cached
                            );
                            // Every clean key can be evicted: its queue entry is there.
                            let store = f.store.lock();
                            let disk = store.disk.as_ref().unwrap();
                            for (key, meta) in &disk.meta {
                                if let super::super::Meta::Clean { queued, .. } = meta {
                                    proptest::prop_assert!(
                                        disk.uses.iter().any(|(t, k)| t == queued && k == key),
                                        "{} is not queued", key
                                    );
                                }
                            }
                            let clean = disk
                                .meta
                                .values()
                                .filter(|meta| matches!(meta, super::super::Meta::Clean { .. }))
                                .count();
                            proptest::prop_assert_eq!(disk.clean, clean, "the clean keys counted");
                        }
                        Op::Range(a, b) => {
                            let (a, b) = (name(a.min(b)), name(a.max(b)));
                            let found = store.range((Bound::Included(a.clone()), Bound::Excluded(b.clone())));
                            let expected: Vec<(String, (i64, i64))> = model
                                .range(a..b)
                                .map(|(k, v)| (k.clone(), *v))
                                .collect();
                            proptest::prop_assert_eq!(found, expected);
                        }
                    }
                }
                proptest::prop_assert!(f.handle.take_failure().is_none());
            }
        }

        #[test]
        fn the_least_recently_used_entry_is_evicted() {
            let f = fixture(2);
            insert_and_commit(&f, &["a", "b", "c"]);
            let cached = |key: &str| f.store.lock().map.contains_key(key);
            assert!(
                !cached("a") && cached("b") && cached("c"),
                "a was the oldest"
            );
            // a read back, then used again and again: b is the least recently used now.
            for _ in 0..200 {
                assert_eq!(f.store.lock().get(&"a".to_string()), Some((1, 1)));
            }
            assert!(cached("a") && !cached("b") && cached("c"));
            assert_eq!(f.store.lock().get(&"b".to_string()), Some((1, 1)));
            assert!(cached("a") && cached("b") && !cached("c"));
            // a, queued before b but used since, gets a second chance: b goes.
            assert_eq!(f.store.lock().get(&"c".to_string()), Some((1, 1)));
            assert!(cached("a") && !cached("b") && cached("c"));
            let disk = f.store.lock().disk.as_ref().map(|d| d.uses.len()).unwrap();
            assert!(disk <= 2 * 2 + 64 + 1, "stale uses are dropped: {disk}");
        }

        /// A key updated at every commit is queued at every one; the stale entries are
        /// dropped now and then, and the key's own entry stays, so it can still be evicted.
        #[test]
        fn a_key_updated_at_every_commit_stays_evictable() {
            let f = fixture(100);
            for round in 0..300 {
                f.store.lock().insert("hot".to_string(), (round, round));
                commit(&f, &[record("hot", Some(round))]);
                let store = f.store.lock();
                let disk = store.disk.as_ref().unwrap();
                let Some(super::super::Meta::Clean { queued, .. }) = disk.meta.get("hot") else {
                    panic!("clean after the commit");
                };
                assert!(
                    disk.uses
                        .iter()
                        .any(|(tick, key)| tick == queued && key == "hot"),
                    "round {round}: the key is not queued"
                );
                assert!(disk.uses.len() <= 2 + 64 + 1, "{}", disk.uses.len());
            }
        }

        /// Detached (its local state about to be deleted), a store holds every entry in
        /// memory: the database's, and the updates since the commit over them.
        #[test]
        fn a_detached_store_holds_every_entry_in_memory() {
            let f = fixture(1);
            insert_and_commit(&f, &["a", "b", "c"]);
            f.store.lock().insert("a".to_string(), (2, 2));
            f.store.lock().remove(&"b".to_string());
            f.handle.detach().unwrap();
            drop(f.state);
            let mut store = f.store.lock();
            assert!(store.disk.is_none());
            let all = store.range((std::ops::Bound::Unbounded, std::ops::Bound::Unbounded));
            assert_eq!(
                all,
                vec![("a".to_string(), (2, 2)), ("c".to_string(), (1, 1))]
            );
        }

        #[test]
        fn updates_since_the_commit_win_over_the_local_state() {
            let f = fixture(2);
            insert_and_commit(&f, &["a", "b", "c", "d"]);
            // Not committed yet: an update and a deletion of keys that may be evicted.
            assert_eq!(f.store.lock().insert("a".to_string(), (2, 2)), Some((1, 1)));
            assert_eq!(f.store.lock().remove(&"b".to_string()), Some((1, 1)));
            f.store.lock().put("e".to_string(), Some((5, 5)));
            let mut store = f.store.lock();
            assert_eq!(store.get(&"a".to_string()), Some((2, 2)));
            assert_eq!(store.get(&"b".to_string()), None, "deleted, not read back");
            let range = store.range((
                std::ops::Bound::Included("a".to_string()),
                std::ops::Bound::Excluded("d".to_string()),
            ));
            let keys: Vec<(String, i64)> = range.into_iter().map(|(k, (v, _))| (k, v)).collect();
            assert_eq!(keys, vec![("a".to_string(), 2), ("c".to_string(), 1)]);
            drop(store);
            // The next commit writes them; the store then forgets them from memory.
            commit(
                &f,
                &[
                    record("a", Some(2)),
                    record("b", None),
                    record("e", Some(5)),
                ],
            );
            assert!(f.handle.entries_in_memory() <= 2);
            let mut store = f.store.lock();
            assert_eq!(store.get(&"a".to_string()), Some((2, 2)));
            assert_eq!(store.get(&"b".to_string()), None);
            assert_eq!(store.get(&"e".to_string()), Some((5, 5)));
            assert_eq!(store.len(), 4);
        }

        #[test]
        fn a_value_that_does_not_decode_is_a_failure_not_a_panic() {
            let f = fixture(0);
            let corrupt: LocalRecord = (
                "counts".to_string(),
                Bytes::from_static(b"k"),
                Some(Bytes::from_static(b"short")),
            );
            commit(&f, &[corrupt]);
            assert_eq!(f.store.lock().get(&"k".to_string()), None);
            let failure = f.handle.take_failure().unwrap();
            assert!(
                matches!(failure, crate::Error::DataSize { expected: 8, .. }),
                "{failure:?}"
            );
            assert!(f.handle.take_failure().is_none(), "reported once");
        }

        #[test]
        fn a_store_read_after_its_task_closed_says_so() {
            let f = fixture(0);
            commit(&f, &[record("k", Some(1))]);
            let Fixture {
                _dir,
                state,
                store,
                handle,
            } = f;
            drop(state);
            assert_eq!(store.lock().get(&"k".to_string()), None);
            assert!(matches!(
                handle.take_failure(),
                Some(crate::Error::StoreClosed(name)) if name == "counts"
            ));
        }
    }

    /// Persistent window and session stores against a real local state: a key's windows are
    /// a range of the database's keys (Kafka's windowed key formats), merged with what
    /// changed since the last commit.
    mod windowed {
        use std::collections::HashMap;
        use std::sync::Arc;
        use std::time::Duration;

        use bytes::Bytes;
        use parking_lot::Mutex;

        use super::super::{
            ChangelogCodec, Persistent, PersistentStore, SharedStore, ValueFormat,
            WindowedRetention, encode_value, new_store,
        };
        use crate::serdes::{Serde, SessionWindowedSerde, WindowStoreKeySerde};
        use crate::state::{LocalRecord, TaskState, try_lock};
        use crate::window_store::WindowedStoreKind;
        use crate::windowed::Retention;
        use crate::{I64Serde, StringSerde, Window, Windowed};

        /// Time windows' size.
        const SIZE: i64 = 10;

        struct Fixture {
            _dir: tempfile::TempDir,
            state: Arc<TaskState>,
            store: SharedStore<Windowed<String>, i64>,
            handle: Persistent<Windowed<String>, i64>,
            retention: Arc<Mutex<Retention>>,
            key_serde: Arc<dyn Serde<Windowed<String>>>,
        }

        fn key_serde(kind: WindowedStoreKind) -> Arc<dyn Serde<Windowed<String>>> {
            match kind {
                WindowedStoreKind::Window => Arc::new(WindowStoreKeySerde::new(
                    StringSerde,
                    Duration::from_millis(SIZE as u64),
                )),
                WindowedStoreKind::Session => Arc::new(SessionWindowedSerde::new(StringSerde)),
            }
        }

        /// A store of `kind` with `max_cached` entries cached, on the local state in `dir`.
        fn fixture_in(
            dir: tempfile::TempDir,
            kind: WindowedStoreKind,
            max_cached: usize,
        ) -> Fixture {
            let task_dir = dir.path().join("0");
            let lock = try_lock(&task_dir).unwrap().unwrap();
            let (state, _) = TaskState::open(task_dir, lock).unwrap();
            let state = Arc::new(state);
            let store = new_store();
            let retention = Arc::new(Mutex::new(Retention::new(1_000)));
            let key_serde = key_serde(kind);
            let handle = Persistent {
                store: Arc::clone(&store),
                name: "windows".to_string(),
                codec: Arc::new(ChangelogCodec {
                    key_serde: Arc::clone(&key_serde),
                    value_serde: Arc::new(I64Serde),
                    format: ValueFormat::Timestamped,
                }),
                windowed: Some(WindowedRetention {
                    kind,
                    retention: Arc::clone(&retention),
                }),
            };
            handle.attach(&state, max_cached);
            Fixture {
                _dir: dir,
                state,
                store,
                handle,
                retention,
                key_serde,
            }
        }

        fn fixture(kind: WindowedStoreKind, max_cached: usize) -> Fixture {
            fixture_in(tempfile::tempdir().unwrap(), kind, max_cached)
        }

        fn windowed(
            kind: WindowedStoreKind,
            key: &str,
            start: i64,
            length: i64,
        ) -> Windowed<String> {
            let end = match kind {
                WindowedStoreKind::Window => start + SIZE,
                WindowedStoreKind::Session => start + length,
            };
            Windowed {
                key: key.to_string(),
                window: Window { start, end },
            }
        }

        fn record(f: &Fixture, key: &Windowed<String>, value: Option<i64>) -> LocalRecord {
            let value = value.map(|v| {
                Bytes::from(encode_value(ValueFormat::Timestamped, &I64Serde, &v, v).unwrap())
            });
            let key = Bytes::from(f.key_serde.serialize(key).unwrap());
            ("windows".to_string(), key, value)
        }

        fn commit(f: &Fixture, records: &[LocalRecord]) {
            f.state.commit(records, &HashMap::new()).unwrap();
            f.handle.committed();
        }

        /// Keys whose bytes begin with another's ("a", "a\0", "ab") and times on both sides of
        /// zero: each key's query finds its own windows only, by time.
        #[test]
        fn a_keys_windows_are_read_from_the_local_state_and_no_other_keys() {
            for kind in [WindowedStoreKind::Window, WindowedStoreKind::Session] {
                let f = fixture(kind, 1);
                let keys = ["a", "a\0", "ab", "b", ""];
                let starts = [-20, -1, 0, 5, 300];
                let mut records = Vec::new();
                for key in keys {
                    for start in starts {
                        let windowed = windowed(kind, key, start, 3);
                        f.store.lock().put(windowed.clone(), Some((start, start)));
                        records.push(record(&f, &windowed, Some(start)));
                    }
                }
                commit(&f, &records);
                assert_eq!(f.handle.entries_in_memory(), 1, "{kind:?}");
                let time = |start: i64| match kind {
                    WindowedStoreKind::Window => start,
                    WindowedStoreKind::Session => start + 3,
                };
                for key in keys {
                    for (from, to) in [(i64::MIN, i64::MAX), (-1, 4), (0, 300), (-30, -2), (6, 2)] {
                        let found: Vec<(String, i64)> = f
                            .store
                            .lock()
                            .windows(kind, &key.to_string(), from, to)
                            .into_iter()
                            .map(|(w, (value, _))| (w.key, value))
                            .collect();
                        let expected: Vec<(String, i64)> = starts
                            .iter()
                            .filter(|start| (from..=to).contains(&time(**start)))
                            .map(|start| (key.to_string(), *start))
                            .collect();
                        assert_eq!(found, expected, "{kind:?} {key:?} [{from}, {to}]");
                    }
                }
                assert!(f.handle.entries_in_memory() <= 1);
                assert!(f.handle.take_failure().is_none());
            }
        }

        /// The latest time in the local state is the one the retention counts from when the
        /// store is attached again after a restart; expired windows in the local state are
        /// found by the sweep and deleted from it.
        #[test]
        fn a_restart_takes_the_retention_time_from_the_local_state_and_sweeps_it() {
            for kind in [WindowedStoreKind::Window, WindowedStoreKind::Session] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().to_path_buf();
                let f = fixture_in(dir, kind, 2);
                let records: Vec<LocalRecord> = [100, 2_000, 5_000]
                    .iter()
                    .map(|start| {
                        let windowed = windowed(kind, "k", *start, 4);
                        f.store.lock().put(windowed.clone(), Some((1, 1)));
                        record(&f, &windowed, Some(1))
                    })
                    .collect();
                commit(&f, &records);
                f.state.persist().unwrap();
                let Fixture {
                    _dir: dir,
                    state,
                    handle,
                    store,
                    ..
                } = f;
                drop((state, handle, store));
                assert_eq!(dir.path(), path);
                let f = fixture_in(dir, kind, 2);
                let latest = match kind {
                    WindowedStoreKind::Window => 5_000,
                    WindowedStoreKind::Session => 5_004,
                };
                assert_eq!(f.retention.lock().latest(), latest, "{kind:?}");
                assert_eq!(f.handle.entries_in_memory(), 0, "nothing loaded");
                let (dropped, stored) = f.store.lock().drop_expired(kind, latest - 1_000);
                assert!(dropped.is_empty(), "none in memory");
                assert_eq!(stored.len(), 2, "{kind:?}: the two older windows");
                let deletions: Vec<LocalRecord> = stored
                    .into_iter()
                    .map(|key| ("windows".to_string(), Bytes::from(key), None))
                    .collect();
                commit(&f, &deletions);
                let left = f
                    .store
                    .lock()
                    .windows(kind, &"k".to_string(), i64::MIN, i64::MAX);
                assert_eq!(left.len(), 1, "{kind:?}");
                assert_eq!(left[0].0.window.start, 5_000);
            }
        }

        /// A sweep of a local state larger than a step goes a step per call: each finds the
        /// expired keys among the next `SWEEP_STEP` keys, and together they find every expired
        /// key once and no other, while a new window is put between the steps.
        #[test]
        fn a_large_local_state_is_swept_a_step_at_a_time() {
            use super::super::SWEEP_STEP;
            let kind = WindowedStoreKind::Window;
            let f = fixture_in(tempfile::tempdir().unwrap(), kind, 2);
            // Two windows per key: at 0 (to expire) and at 10,000 (kept).
            let keys = SWEEP_STEP + SWEEP_STEP / 2;
            let mut records = Vec::new();
            for i in 0..keys {
                for start in [0, 10_000] {
                    let windowed = windowed(kind, &format!("k{i:05}"), start, 4);
                    f.store.lock().put(windowed.clone(), Some((1, 1)));
                    records.push(record(&f, &windowed, Some(1)));
                }
            }
            commit(&f, &records);
            let (_, first) = f.store.lock().drop_expired(kind, 5_000);
            assert_eq!(
                first.len(),
                SWEEP_STEP / 2,
                "one step visits SWEEP_STEP keys"
            );
            let extra = windowed(kind, "a-new-key", 0, 4);
            f.store.lock().put(extra.clone(), Some((1, 1)));
            commit(&f, &[record(&f, &extra, Some(1))]);
            let mut found = first;
            loop {
                let (_, step) = f.store.lock().continue_sweep(kind);
                if step.is_empty() {
                    break;
                }
                found.extend(step);
            }
            let mut unique = found.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), found.len(), "each key found once");
            // The new key sorts before the cursor: the next sweep finds it.
            assert_eq!(found.len(), keys, "every expired window of the local state");
            assert!(f.store.lock().continue_sweep(kind).1.is_empty(), "done");
            let (_, again) = f.store.lock().drop_expired(kind, 5_000);
            assert!(again.len() <= SWEEP_STEP, "a new sweep starts over");
        }

        /// An in-memory windowed store drops its expired windows a step at a time too: each
        /// step visits `SWEEP_STEP` keys and drops the expired among them, every expired
        /// window is dropped once, a window put behind the cursor waits for the next sweep,
        /// and the live windows stay.
        #[test]
        fn an_in_memory_windowed_store_drops_expired_windows_a_step_at_a_time() {
            use super::super::SWEEP_STEP;
            let kind = WindowedStoreKind::Window;
            let store: SharedStore<Windowed<String>, i64> = new_store();
            let keys = SWEEP_STEP + SWEEP_STEP / 2;
            for i in 0..keys {
                for start in [0, 10_000] {
                    let windowed = windowed(kind, &format!("k{i:05}"), start, 4);
                    store.lock().put(windowed, Some((1, 1)));
                }
            }
            let (first, stored) = store.lock().drop_expired(kind, 5_000);
            assert!(stored.is_empty(), "no local state");
            assert_eq!(
                first.len(),
                SWEEP_STEP / 2,
                "one step visits SWEEP_STEP keys"
            );
            let behind = windowed(kind, "a-new-key", 0, 4);
            store.lock().put(behind.clone(), Some((1, 1)));
            let mut dropped = first;
            loop {
                let (step, _) = store.lock().continue_sweep(kind);
                if step.is_empty() {
                    break;
                }
                dropped.extend(step);
            }
            let mut unique = dropped.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), keys, "each expired window dropped once");
            assert!(dropped.iter().all(|w| w.window.start == 0));
            let left = store.lock().len();
            assert_eq!(
                left,
                keys as u64 + 1,
                "the live windows and the one put behind"
            );
            let (again, _) = store.lock().drop_expired(kind, 5_000);
            assert_eq!(again, vec![behind], "the next sweep drops it");
        }

        #[derive(Debug, Clone)]
        enum Op {
            Put(u8, i64, i64, i64),
            Remove(u8, i64, i64),
            Windows(u8, i64, i64),
            Expire(i64),
            Commit,
        }

        fn op() -> impl proptest::strategy::Strategy<Value = Op> {
            use proptest::prelude::*;
            let key = 0..6u8;
            let time = -30..60i64;
            let length = 0..8i64;
            prop_oneof![
                4 => (key.clone(), time.clone(), length.clone(), any::<i64>())
                    .prop_map(|(k, t, l, v)| Op::Put(k, t, l, v)),
                1 => (key.clone(), time.clone(), length).prop_map(|(k, t, l)| Op::Remove(k, t, l)),
                3 => (key, time.clone(), time.clone()).prop_map(|(k, a, b)| Op::Windows(k, a, b)),
                1 => time.prop_map(Op::Expire),
                1 => Just(Op::Commit),
            ]
        }

        proptest::proptest! {
            /// Whatever the updates, queries, expiries, commits and cache bound, a persistent
            /// window or session store answers a key's windows as an in-memory one does.
            /// Nothing is put or queried at an expired time, as the operators never do.
            #[test]
            fn a_persistent_windowed_store_answers_as_an_in_memory_one(
                ops in proptest::collection::vec(op(), 1..300),
                max_cached in 0..4usize,
                session in proptest::bool::ANY,
            ) {
                let kind = if session { WindowedStoreKind::Session } else { WindowedStoreKind::Window };
                let f = fixture(kind, max_cached);
                let model: SharedStore<Windowed<String>, i64> = new_store();
                let mut logged: Vec<LocalRecord> = Vec::new();
                let mut expired_keys: Vec<LocalRecord> = Vec::new();
                let mut expired = i64::MIN;
                // Keys whose bytes begin with another's.
                let name = |k: u8| ["", "a", "a\0", "ab", "b", "abc"][usize::from(k)].to_string();
                for op in ops {
                    let mut store = f.store.lock();
                    let mut model = model.lock();
                    let live = |w: &Windowed<String>| kind.time_of(&w.window) > expired;
                    match op {
                        Op::Put(k, t, l, v) => {
                            let w = windowed(kind, &name(k), t, l);
                            if live(&w) {
                                proptest::prop_assert_eq!(
                                    store.insert(w.clone(), (v, v)),
                                    model.insert(w.clone(), (v, v))
                                );
                                logged.push(record(&f, &w, Some(v)));
                            }
                        }
                        Op::Remove(k, t, l) => {
                            let w = windowed(kind, &name(k), t, l);
                            if live(&w) {
                                proptest::prop_assert_eq!(store.remove(&w), model.remove(&w));
                                logged.push(record(&f, &w, None));
                            }
                        }
                        Op::Windows(k, from, to) => {
                            let from = from.max(expired.saturating_add(1));
                            proptest::prop_assert_eq!(
                                store.windows(kind, &name(k), from, to),
                                model.windows(kind, &name(k), from, to)
                            );
                        }
                        Op::Expire(t) => {
                            expired = expired.max(t);
                            let (dropped, stored) = store.drop_expired(kind, expired);
                            model.drop_expired(kind, expired);
                            // Deleted from the local state after the commit's records, as
                            // the runtime writes them.
                            for key in dropped {
                                expired_keys.push((
                                    "windows".to_string(),
                                    Bytes::from(f.key_serde.serialize(&key).unwrap()),
                                    None,
                                ));
                            }
                            for key in stored {
                                expired_keys.push(("windows".to_string(), Bytes::from(key), None));
                            }
                        }
                        Op::Commit => {
                            drop((store, model));
                            logged.append(&mut expired_keys);
                            commit(&f, &std::mem::take(&mut logged));
                            let cached = f.handle.entries_in_memory();
                            proptest::prop_assert!(cached <= max_cached as u64);
                        }
                    }
                }
                proptest::prop_assert!(f.handle.take_failure().is_none());
            }
        }
    }

    /// A processor's plain key-value store logs the value alone; the DSL's stores prefix the
    /// timestamp. Both read back.
    #[test]
    fn plain_and_timestamped_changelog_values() {
        use super::{NO_TIMESTAMP, ValueFormat, decode_value, encode_value};
        use crate::I64Serde;

        let plain = encode_value(ValueFormat::Plain, &I64Serde, &5, 99).unwrap();
        assert_eq!(plain, 5_i64.to_be_bytes());
        assert_eq!(
            decode_value(ValueFormat::Plain, &I64Serde, &plain).unwrap(),
            (5, NO_TIMESTAMP)
        );
        let timestamped = encode_value(ValueFormat::Timestamped, &I64Serde, &5, 99).unwrap();
        assert_eq!(timestamped[..8], 99_i64.to_be_bytes());
        assert_eq!(timestamped[8..], 5_i64.to_be_bytes());
        assert_eq!(
            decode_value(ValueFormat::Timestamped, &I64Serde, &timestamped).unwrap(),
            (5, 99)
        );
    }
}
