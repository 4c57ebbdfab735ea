//! Window and session stores for processors (Kafka's `WindowStore` and `SessionStore` from
//! `Stores.windowStoreBuilder` and `Stores.sessionStoreBuilder`): the DSL's windowed stores
//! ([`WindowedStore`], its [`StoreRetention`], its changelog and local state), written by a
//! processor through a handle.

use std::any::Any;
use std::ops::RangeBounds;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::store::{StoreBuilder, StoreLog, StoreLogger, Stores, sealed};
use crate::kstream::StreamsBuilder;
use crate::serdes::{Serde, SessionWindowedSerde, WindowStoreKeySerde};
use crate::store::{NO_TIMESTAMP, SharedStore, ValueFormat, logged_store};
use crate::topology::{BuilderState, Data, SerdeRef};
use crate::window::{Window, Windowed};
use crate::window_store::{
    ReadOnlySessionStore, ReadOnlyWindowStore, WindowedStore, WindowedStoreKind,
};
use crate::windowed::StoreRetention;

/// A window store of a given name, retention and window size (Kafka's
/// `WindowBytesStoreSupplier` from `Stores.inMemoryWindowStore` or
/// `Stores.persistentWindowStore`).
#[derive(Debug, Clone)]
pub struct WindowBytesStoreSupplier {
    name: String,
    retention_ms: i64,
    window_size: Duration,
    window_size_ms: i64,
    retain_duplicates: bool,
    persistent: bool,
    /// Why Kafka's `Stores` would refuse these arguments: reported when the store is added.
    invalid: Option<String>,
}

/// A session store of a given name and retention (Kafka's `SessionBytesStoreSupplier` from
/// `Stores.inMemorySessionStore` or `Stores.persistentSessionStore`).
#[derive(Debug, Clone)]
pub struct SessionBytesStoreSupplier {
    name: String,
    retention_ms: i64,
    persistent: bool,
    invalid: Option<String>,
}

/// `duration` in milliseconds, or why it is refused: Kafka's durations are `long`
/// milliseconds.
fn millis(duration: Duration, what: &str) -> Result<i64, String> {
    i64::try_from(duration.as_millis())
        .map_err(|_| format!("{what} {duration:?} does not fit in 64-bit milliseconds"))
}

impl Stores {
    /// An in-memory window store named `name` (Kafka's `inMemoryWindowStore`) that keeps a
    /// window `retention_period` past the latest window start put (its stream time) and
    /// holds windows of `window_size`. The retention must be no smaller than the window size.
    ///
    /// `retain_duplicates` (keeping every value put for a key and window, as Kafka's
    /// stream-stream joins do) is not supported: a store asking for it is refused when added.
    pub fn in_memory_window_store(
        name: &str,
        retention_period: Duration,
        window_size: Duration,
        retain_duplicates: bool,
    ) -> WindowBytesStoreSupplier {
        window_supplier(
            name,
            (retention_period, window_size),
            retain_duplicates,
            false,
        )
    }

    /// A persistent window store (Kafka's `persistentWindowStore`, the plain one: its values
    /// carry no timestamp, unlike `persistentTimestampedWindowStore`'s). With a
    /// [`StreamsConfig::state_dir`](crate::StreamsConfig::state_dir) and logging on, served
    /// from the task's local state with a bounded cache, as a persistent key-value store; in
    /// memory otherwise. Arguments as [`Stores::in_memory_window_store`].
    pub fn persistent_window_store(
        name: &str,
        retention_period: Duration,
        window_size: Duration,
        retain_duplicates: bool,
    ) -> WindowBytesStoreSupplier {
        window_supplier(
            name,
            (retention_period, window_size),
            retain_duplicates,
            true,
        )
    }

    /// A window store of `K` to `V` from `supplier`, to add with
    /// [`StreamsBuilder::add_state_store`]; logged (by default) to
    /// `<application.id>-<name>-changelog` in Kafka's window store format: the key is the
    /// serialized key, the window start (8 bytes, big-endian) and a sequence number (4 bytes,
    /// 0), the value the serialized value.
    pub fn window_store_builder<K: Data + Ord, V: Data>(
        supplier: WindowBytesStoreSupplier,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> WindowStoreBuilder<K, V> {
        WindowStoreBuilder {
            supplier,
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
            logging: true,
        }
    }

    /// An in-memory session store named `name` (Kafka's `inMemorySessionStore`) that keeps a
    /// session `retention_period` past the latest session end put.
    pub fn in_memory_session_store(
        name: &str,
        retention_period: Duration,
    ) -> SessionBytesStoreSupplier {
        session_supplier(name, retention_period, false)
    }

    /// A persistent session store (Kafka's `persistentSessionStore`), served from the task's
    /// local state as [`Stores::persistent_window_store`].
    pub fn persistent_session_store(
        name: &str,
        retention_period: Duration,
    ) -> SessionBytesStoreSupplier {
        session_supplier(name, retention_period, true)
    }

    /// A session store of `K` to `V` from `supplier`, to add with
    /// [`StreamsBuilder::add_state_store`]; logged (by default) to
    /// `<application.id>-<name>-changelog` in Kafka's session store format: the key is the
    /// serialized key, the session's end and its start (8 bytes each, big-endian), the value
    /// the serialized value.
    pub fn session_store_builder<K: Data + Ord, V: Data>(
        supplier: SessionBytesStoreSupplier,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> SessionStoreBuilder<K, V> {
        SessionStoreBuilder {
            supplier,
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
            logging: true,
        }
    }
}

fn window_supplier(
    name: &str,
    (retention_period, window_size): (Duration, Duration),
    retain_duplicates: bool,
    persistent: bool,
) -> WindowBytesStoreSupplier {
    let retention = millis(retention_period, "the retention period");
    let size = millis(window_size, "the window size");
    let invalid = match (&retention, &size) {
        (Err(reason), _) | (_, Err(reason)) => Some(reason.clone()),
        (Ok(retention), Ok(size)) if size > retention => Some(format!(
            "the retention period of a window store must be no smaller than its window size, \
             got a window size of {size} ms and a retention period of {retention} ms"
        )),
        _ if retain_duplicates => Some(
            "window stores that retain duplicates are not supported (retain_duplicates must \
             be false)"
                .to_string(),
        ),
        _ => None,
    };
    WindowBytesStoreSupplier {
        name: name.to_string(),
        retention_ms: retention.unwrap_or(0),
        window_size,
        window_size_ms: size.unwrap_or(0),
        retain_duplicates,
        persistent,
        invalid,
    }
}

fn session_supplier(
    name: &str,
    retention_period: Duration,
    persistent: bool,
) -> SessionBytesStoreSupplier {
    let retention = millis(retention_period, "the retention period");
    SessionBytesStoreSupplier {
        name: name.to_string(),
        retention_ms: retention.clone().unwrap_or(0),
        persistent,
        invalid: retention.err(),
    }
}

impl WindowBytesStoreSupplier {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The window size in milliseconds (Kafka's `windowSize`).
    pub fn window_size_ms(&self) -> i64 {
        self.window_size_ms
    }

    /// The retention period in milliseconds (Kafka's `retentionPeriod`).
    pub fn retention_period_ms(&self) -> i64 {
        self.retention_ms
    }

    /// Whether the store was asked to keep every value put for a key and window.
    pub fn retain_duplicates(&self) -> bool {
        self.retain_duplicates
    }
}

impl SessionBytesStoreSupplier {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The retention period in milliseconds (Kafka's `retentionPeriod`).
    pub fn retention_period_ms(&self) -> i64 {
        self.retention_ms
    }
}

/// Builds a window store (Kafka's `StoreBuilder<WindowStore<K, V>>`).
pub struct WindowStoreBuilder<K, V> {
    supplier: WindowBytesStoreSupplier,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    logging: bool,
}

/// Builds a session store (Kafka's `StoreBuilder<SessionStore<K, V>>`).
pub struct SessionStoreBuilder<K, V> {
    supplier: SessionBytesStoreSupplier,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    logging: bool,
}

impl<K, V> std::fmt::Debug for WindowStoreBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowStoreBuilder")
            .field("supplier", &self.supplier)
            .field("logging", &self.logging)
            .finish()
    }
}

impl<K, V> std::fmt::Debug for SessionStoreBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStoreBuilder")
            .field("supplier", &self.supplier)
            .field("logging", &self.logging)
            .finish()
    }
}

impl<K, V> WindowStoreBuilder<K, V> {
    /// Keeps the store out of any changelog (Kafka's `withLoggingDisabled`): it starts empty
    /// whenever its task is created, on another instance or after a restart.
    #[must_use]
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }
}

impl<K, V> SessionStoreBuilder<K, V> {
    /// Keeps the store out of any changelog (Kafka's `withLoggingDisabled`).
    #[must_use]
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }
}

impl<K: Data + Ord, V: Data> StoreBuilder for WindowStoreBuilder<K, V> {
    fn name(&self) -> &str {
        &self.supplier.name
    }

    fn logging_enabled(&self) -> bool {
        self.logging
    }
}

impl<K: Data + Ord, V: Data> StoreBuilder for SessionStoreBuilder<K, V> {
    fn name(&self) -> &str {
        &self.supplier.name
    }

    fn logging_enabled(&self) -> bool {
        self.logging
    }
}

impl<K: Data + Ord, V: Data> sealed::Sealed for WindowStoreBuilder<K, V> {
    fn add_to(self, builder: &StreamsBuilder) {
        let supplier = self.supplier;
        let mut state = builder.state.lock();
        if let Some(reason) = supplier.invalid {
            state
                .errors
                .push(format!("state store {}: {reason}", supplier.name));
            return;
        }
        let key_serde: SerdeRef<Windowed<K>> = Arc::new(WindowStoreKeySerde::new(
            self.key_serde,
            supplier.window_size,
        ));
        let parts = add_windowed(
            &mut state,
            &supplier.name,
            (WindowedStoreKind::Window, supplier.retention_ms),
            (key_serde, self.value_serde),
            (self.logging, supplier.persistent),
        );
        let log = Arc::clone(&parts.log);
        let handle = WindowStore {
            view: ReadOnlyWindowStore {
                name: supplier.name.clone(),
                stores: vec![parts.store.clone()],
            },
            parts,
            window_size_ms: supplier.window_size_ms,
        };
        register_handle(
            &mut state,
            &supplier.name,
            log,
            WindowedStoreKind::Window,
            handle,
        );
    }
}

impl<K: Data + Ord, V: Data> sealed::Sealed for SessionStoreBuilder<K, V> {
    fn add_to(self, builder: &StreamsBuilder) {
        let supplier = self.supplier;
        let mut state = builder.state.lock();
        if let Some(reason) = supplier.invalid {
            state
                .errors
                .push(format!("state store {}: {reason}", supplier.name));
            return;
        }
        let key_serde: SerdeRef<Windowed<K>> = Arc::new(SessionWindowedSerde::new(self.key_serde));
        let parts = add_windowed(
            &mut state,
            &supplier.name,
            (WindowedStoreKind::Session, supplier.retention_ms),
            (key_serde, self.value_serde),
            (self.logging, supplier.persistent),
        );
        let log = Arc::clone(&parts.log);
        let handle = SessionStore {
            view: ReadOnlySessionStore {
                name: supplier.name.clone(),
                stores: vec![parts.store.clone()],
            },
            parts,
        };
        register_handle(
            &mut state,
            &supplier.name,
            log,
            WindowedStoreKind::Session,
            handle,
        );
    }
}

/// What a window or session store handle writes through: the store, its retention, and its
/// log (which also carries the keys its retention drops to the task's local state).
struct HandleParts<K, V> {
    store: WindowedStore<K, V>,
    retention: Arc<StoreRetention<K>>,
    log: Arc<StoreLog>,
    logger: Option<Arc<StoreLogger<Windowed<K>, V>>>,
}

impl<K, V> Clone for HandleParts<K, V> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            retention: Arc::clone(&self.retention),
            log: Arc::clone(&self.log),
            logger: self.logger.clone(),
        }
    }
}

impl<K: Data + Ord, V: Data> HandleParts<K, V> {
    /// Puts `value` (`None`: deletes) under `key`, whose time (`kind`'s: a window's start, a
    /// session's end) moves the store's retention on, unless that time has expired, as
    /// Kafka's in-memory window and session stores drop an expired record. The put is logged
    /// either way, as Kafka's change logging logs what it is given.
    fn put(&self, key: Windowed<K>, value: Option<V>) {
        if let Some(logger) = &self.logger {
            logger.log(&key, value.as_ref());
        }
        let time = self.store.kind.time_of(&key.window);
        let mut entries = self.store.entries.lock();
        let mut retention = self.retention.lock();
        retention.observe(time);
        if time > retention.expired_until() {
            entries.put(key, value.map(|value| (value, NO_TIMESTAMP)));
        } else {
            self.log.dropped();
            // The task's local state takes the changelog's records: the dropped one is
            // deleted from it again, after it (a key that did not serialize failed the call
            // already).
            if let Some(Ok(stored)) = self.logger.as_ref().map(|l| l.key_serde.serialize(&key)) {
                self.log.expire(vec![Bytes::from(stored)]);
            }
        }
        match self.retention.expire(&mut retention, &mut entries) {
            Ok(keys) => self.log.expire(keys),
            Err(error) => self.log.fail(error),
        }
    }
}

/// Adds the store to the topology: as a key-value store of windowed keys (which processors
/// are connected to by name), a windowed store with its retention (for the read-only views),
/// and, logged, its changelog and restore; persistent, its local state.
fn add_windowed<K: Data + Ord, V: Data>(
    state: &mut BuilderState,
    name: &str,
    (kind, retention_ms): (WindowedStoreKind, i64),
    (key_serde, value_serde): (SerdeRef<Windowed<K>>, SerdeRef<V>),
    (logging, persistent): (bool, bool),
) -> HandleParts<K, V> {
    let entries: SharedStore<Windowed<K>, V> = crate::store::new_store();
    state.add_store(name, Arc::new(Arc::clone(&entries)));
    let (log, logger) = if logging {
        // Before the retention is registered, which wraps the restore this registers.
        let topic = logged_store(
            state,
            name,
            &entries,
            Arc::clone(&key_serde),
            Arc::clone(&value_serde),
            ValueFormat::Plain,
        );
        let log = Arc::new(StoreLog::new(name, topic));
        let logger = Arc::new(StoreLogger {
            key_serde: Arc::clone(&key_serde),
            value_serde: Arc::clone(&value_serde),
            log: Arc::clone(&log),
        });
        (log, Some(logger))
    } else {
        // Never written to a topic: it only takes a failure to the task.
        (
            Arc::new(StoreLog::new(name, format!("{name}-changelog"))),
            None,
        )
    };
    let retention = StoreRetention::register_in(
        state,
        name,
        (kind, retention_ms),
        &entries,
        logging.then_some((key_serde, value_serde)),
        persistent.then_some(ValueFormat::Plain),
    );
    HandleParts {
        store: WindowedStore {
            kind,
            entries,
            retention: Arc::clone(retention.shared()),
        },
        retention: Arc::new(retention),
        log,
        logger,
    }
}

/// A processor API window or session store's handle, as its processors look it up: the
/// kind, then the typed handle (a [`WindowStore`] or [`SessionStore`]).
pub(crate) struct WindowedHandle {
    pub(crate) kind: WindowedStoreKind,
    pub(crate) handle: Box<dyn Any + Send + Sync>,
}

fn register_handle(
    state: &mut BuilderState,
    name: &str,
    log: Arc<StoreLog>,
    kind: WindowedStoreKind,
    handle: impl Any + Send + Sync,
) {
    let handle = WindowedHandle {
        kind,
        handle: Box::new(handle),
    };
    state
        .store_logs
        .insert(name.to_string(), (log, Arc::new(handle)));
}

/// A writable window store (Kafka's `WindowStore`), as a processor connected to it gets it
/// from [`ProcessorContext::window_store`](super::ProcessorContext::window_store): a value
/// per key and window start. A handle: clones share the store. Times are window starts,
/// bounds inclusive; windows the retention expired are not found (Kafka's in-memory window
/// store: a window expires once its start is at or before the latest start put minus the
/// retention period). Reads through [`ReadOnlyWindowStore`] (the test driver's and
/// `KafkaStreams`' `window_store`) see every write at once.
pub struct WindowStore<K, V> {
    view: ReadOnlyWindowStore<K, V>,
    parts: HandleParts<K, V>,
    window_size_ms: i64,
}

impl<K, V> Clone for WindowStore<K, V> {
    fn clone(&self) -> Self {
        Self {
            view: ReadOnlyWindowStore {
                name: self.view.name.clone(),
                stores: self.view.stores.clone(),
            },
            parts: self.parts.clone(),
            window_size_ms: self.window_size_ms,
        }
    }
}

impl<K, V> std::fmt::Debug for WindowStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowStore")
            .field("name", &self.view.name)
            .finish()
    }
}

impl<K: Data + Ord, V: Data> WindowStore<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.view.name
    }

    /// Puts `value` for `key` in the window starting at `window_start` (Kafka's `put`); a
    /// `None` value deletes the window (Kafka's `put(key, null, start)`), logged as a
    /// tombstone. A window already expired by the store's retention is not stored. The
    /// window ends at its start plus the store's window size.
    pub fn put(&self, key: K, value: impl Into<Option<V>>, window_start: i64) {
        let window = Window {
            start: window_start,
            end: window_start.saturating_add(self.window_size_ms),
        };
        self.parts.put(Windowed { key, window }, value.into());
    }

    /// The value of `key` in the window that starts at `window_start`.
    pub fn fetch(&self, key: &K, window_start: i64) -> Option<V> {
        self.view.fetch(key, window_start)
    }

    /// The windows of `key` starting in `[time_from, time_to]`, as (window start, value),
    /// oldest first.
    pub fn fetch_range(&self, key: &K, time_from: i64, time_to: i64) -> Vec<(i64, V)> {
        self.view.fetch_range(key, time_from, time_to)
    }

    /// [`WindowStore::fetch_range`], newest first (Kafka's `backwardFetch`).
    pub fn backward_fetch(&self, key: &K, time_from: i64, time_to: i64) -> Vec<(i64, V)> {
        self.view.backward_fetch(key, time_from, time_to)
    }

    /// The windows of the keys in `[from_key, to_key]` starting in `[time_from, time_to]`,
    /// by start, then key.
    pub fn fetch_key_range(
        &self,
        from_key: &K,
        to_key: &K,
        time_from: i64,
        time_to: i64,
    ) -> Vec<(Windowed<K>, V)> {
        self.view
            .fetch_key_range(from_key, to_key, time_from, time_to)
    }

    /// [`WindowStore::fetch_key_range`], in reverse order.
    pub fn backward_fetch_key_range(
        &self,
        from_key: &K,
        to_key: &K,
        time_from: i64,
        time_to: i64,
    ) -> Vec<(Windowed<K>, V)> {
        self.view
            .backward_fetch_key_range(from_key, to_key, time_from, time_to)
    }

    /// The windows of the keys in `keys` (either end may be open) starting in
    /// `[time_from, time_to]`, by start, then key.
    pub fn fetch_keys<'k>(
        &self,
        keys: impl RangeBounds<&'k K>,
        time_from: i64,
        time_to: i64,
    ) -> Vec<(Windowed<K>, V)>
    where
        K: 'k,
    {
        self.view.fetch_keys(keys, time_from, time_to)
    }

    /// Every key's windows starting in `[time_from, time_to]`, by start, then key.
    pub fn fetch_all(&self, time_from: i64, time_to: i64) -> Vec<(Windowed<K>, V)> {
        self.view.fetch_all(time_from, time_to)
    }

    /// [`WindowStore::fetch_all`], in reverse order (Kafka's `backwardFetchAll`).
    pub fn backward_fetch_all(&self, time_from: i64, time_to: i64) -> Vec<(Windowed<K>, V)> {
        let mut found = self.view.fetch_all(time_from, time_to);
        found.reverse();
        found
    }

    /// Every window the store holds, by start, then key (a copy: the store may change while
    /// the caller iterates).
    pub fn all(&self) -> Vec<(Windowed<K>, V)> {
        self.view.all()
    }

    /// [`WindowStore::all`], in reverse order (Kafka's `backwardAll`).
    pub fn backward_all(&self) -> Vec<(Windowed<K>, V)> {
        let mut found = self.view.all();
        found.reverse();
        found
    }
}

/// A writable session store (Kafka's `SessionStore`), as a processor connected to it gets
/// it from [`ProcessorContext::session_store`](super::ProcessorContext::session_store): a
/// value per key and session (`[start, end]`, both inclusive). A handle: clones share the
/// store. Sessions come by end, then start; sessions the retention expired are not found (a
/// session expires once its end is at or before the latest end put minus the retention
/// period). Reads through [`ReadOnlySessionStore`] see every write at once.
pub struct SessionStore<K, V> {
    view: ReadOnlySessionStore<K, V>,
    parts: HandleParts<K, V>,
}

impl<K, V> Clone for SessionStore<K, V> {
    fn clone(&self) -> Self {
        Self {
            view: ReadOnlySessionStore {
                name: self.view.name.clone(),
                stores: self.view.stores.clone(),
            },
            parts: self.parts.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for SessionStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("name", &self.view.name)
            .finish()
    }
}

impl<K: Data + Ord, V: Data> SessionStore<K, V> {
    /// The store's name.
    pub fn name(&self) -> &str {
        &self.view.name
    }

    /// Puts `value` for the session `session` (Kafka's `put`). A session already expired by
    /// the store's retention is not stored.
    pub fn put(&self, session: Windowed<K>, value: V) {
        self.parts.put(session, Some(value));
    }

    /// Removes the session `session` (Kafka's `remove`), logged as a tombstone.
    pub fn remove(&self, session: &Windowed<K>) {
        if let Some(logger) = &self.parts.logger {
            logger.log(session, None);
        }
        self.parts.store.entries.lock().put(session.clone(), None);
    }

    /// The sessions of `key` that end at or after `earliest_session_end` and start at or
    /// before `latest_session_start` (those that overlap that span), by end, then start: the
    /// sessions a record at `t` merges with are
    /// `find_sessions(key, t - gap, t + gap)`.
    pub fn find_sessions(
        &self,
        key: &K,
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Vec<(Windowed<K>, V)> {
        self.view
            .find_sessions(key, earliest_session_end, latest_session_start)
    }

    /// [`SessionStore::find_sessions`], newest first.
    pub fn backward_find_sessions(
        &self,
        key: &K,
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Vec<(Windowed<K>, V)> {
        self.view
            .backward_find_sessions(key, earliest_session_end, latest_session_start)
    }

    /// The sessions of the keys in `keys` (either end may be open) that end at or after
    /// `earliest_session_end` and start at or before `latest_session_start`, by end, then
    /// key, then start.
    pub fn find_sessions_of_keys<'k>(
        &self,
        keys: impl RangeBounds<&'k K>,
        earliest_session_end: i64,
        latest_session_start: i64,
    ) -> Vec<(Windowed<K>, V)>
    where
        K: 'k,
    {
        self.view
            .find_sessions_of_keys(keys, earliest_session_end, latest_session_start)
    }

    /// The value of `key`'s session `[session_start, session_end]` (Kafka's `fetchSession`).
    pub fn fetch_session(&self, key: &K, session_start: i64, session_end: i64) -> Option<V> {
        self.view.fetch_session(key, session_start, session_end)
    }

    /// Every session of `key`, by end, then start.
    pub fn fetch(&self, key: &K) -> Vec<(Windowed<K>, V)> {
        self.view.fetch(key)
    }

    /// [`SessionStore::fetch`], newest first (Kafka's `backwardFetch`).
    pub fn backward_fetch(&self, key: &K) -> Vec<(Windowed<K>, V)> {
        self.view.backward_fetch(key)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use crate::processor::{Processor, ProcessorContext, Record};
    use crate::state::{LocalRecord, TaskState, try_lock};
    use crate::store::changelog_value_to_kafka;
    use crate::topology::{DeserializationExceptionHandler, RawRecord, Task, Topology};
    use crate::{
        Error, I64Serde, SessionStore, Stores, StreamsBuilder, StringSerde, TumblingWindows,
        Window, WindowStore, Windowed,
    };

    const SIZE: i64 = 100;

    /// Puts each record's count of its tumbling window in `windows` and a one-record session
    /// in `sessions`.
    #[derive(Default)]
    struct Both(Option<(WindowStore<String, i64>, SessionStore<String, i64>)>);

    impl Processor<String, String, String, String> for Both {
        fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> Result<(), Error> {
            self.0 = Some((ctx.window_store("windows")?, ctx.session_store("sessions")?));
            Ok(())
        }

        fn process(
            &mut self,
            _ctx: &mut ProcessorContext<'_, String, String>,
            record: Record<String, String>,
        ) -> Result<(), Error> {
            let (windows, sessions) = self.0.as_ref().unwrap();
            let start = record.timestamp - record.timestamp.rem_euclid(SIZE);
            let count = windows.fetch(&record.key, start).unwrap_or(0) + 1;
            windows.put(record.key.clone(), count, start);
            let t = record.timestamp;
            let session = Window { start: t, end: t };
            sessions.put(
                Windowed {
                    key: record.key,
                    window: session,
                },
                count,
            );
            Ok(())
        }
    }

    /// Both stores persistent (retention 300 ms), and the DSL's count over the same tumbling
    /// windows (materialized as `dsl`), whose changelog keys the window store must share.
    fn topology() -> Topology {
        let builder = StreamsBuilder::new();
        let retention = Duration::from_millis(300);
        builder.add_state_store(Stores::window_store_builder(
            Stores::persistent_window_store(
                "windows",
                retention,
                Duration::from_millis(SIZE as u64),
                false,
            ),
            StringSerde,
            I64Serde,
        ));
        builder.add_state_store(Stores::session_store_builder(
            Stores::persistent_session_store("sessions", retention),
            StringSerde,
            I64Serde,
        ));
        let stream = builder.stream("in", StringSerde, StringSerde);
        stream.process(Both::default, &["windows", "sessions"]);
        stream
            .group_by_key()
            .windowed_by(TumblingWindows::of(Duration::from_millis(SIZE as u64)))
            .materialized_as("dsl")
            .count();
        builder.build().unwrap()
    }

    fn record(key: &str, timestamp: i64) -> RawRecord {
        RawRecord {
            topic: "in".to_string(),
            partition: 0,
            offset: 0,
            key: Some(Bytes::from(key.to_string())),
            value: Some(Bytes::from_static(b"x")),
            timestamp,
        }
    }

    fn task() -> Task {
        Task::new(topology(), 0, DeserializationExceptionHandler::default())
    }

    /// Every window and session the stores show (the read-only views, which the driver and
    /// `KafkaStreams` give).
    type Found = Vec<(Windowed<String>, i64)>;

    fn contents(task: &Task) -> (Found, Found) {
        let windows = task.topology().window_store::<String, i64>("windows");
        let sessions = task.topology().session_store::<String, i64>("sessions");
        let mut sessions: Vec<_> = ["a", "b"]
            .iter()
            .flat_map(|key| sessions.as_ref().unwrap().fetch(&key.to_string()))
            .collect();
        sessions.sort();
        (windows.unwrap().all(), sessions)
    }

    const INPUT: [(&str, i64); 7] = [
        ("a", 10),
        ("b", 20),
        ("a", 150),
        ("a", 160),
        ("b", 420),
        ("a", 30),
        ("a", 450),
    ];

    /// A task restored from what the processor's stores logged has the same windows and
    /// sessions, and the same retention: what had expired stays unseen (`a@0`, the session
    /// `a@10`), though the changelog holds it.
    #[test]
    fn stores_restored_from_their_changelog_have_the_same_windows_and_sessions() {
        let mut running = task();
        for (key, time) in INPUT {
            running.process(&record(key, time)).unwrap();
        }
        let changelog = running.take_outputs();
        let (windows, sessions) = contents(&running);
        // Latest start 400: windows starting at or before 100 have expired.
        let starts: Vec<(&str, i64, i64)> = windows
            .iter()
            .map(|(w, count)| (w.key.as_str(), w.window.start, *count))
            .collect();
        assert_eq!(starts, vec![("a", 400, 1), ("b", 400, 1)]);
        // Latest end 450: sessions ending at or before 150 have expired (a@30 was dropped).
        let ends: Vec<(&str, i64)> = sessions
            .iter()
            .map(|(s, _)| (s.key.as_str(), s.window.end))
            .collect();
        assert_eq!(ends, vec![("a", 160), ("a", 450), ("b", 420)]);

        let mut restored = task();
        for record in &changelog {
            let store = record.topic.trim_end_matches("-changelog");
            restored
                .restore(store, record.key.as_deref(), record.value.as_deref())
                .unwrap();
        }
        assert_eq!(contents(&restored), (windows, sessions));

        // The window store's changelog keys are the DSL's window store keys, byte for byte.
        // Only the processor's store logs the put of the expired window a@0 (at 30), as
        // Kafka's change logging logs what it is given; the DSL drops the late record first.
        let keys = |topic: &str| -> Vec<(Bytes, i64)> {
            changelog
                .iter()
                .filter(|r| {
                    r.topic == topic && !(topic == "windows-changelog" && r.timestamp == 30)
                })
                .map(|r| (r.key.clone().unwrap(), r.timestamp))
                .collect()
        };
        assert_eq!(keys("windows-changelog").len(), 6);
        assert_eq!(keys("windows-changelog"), keys("dsl-changelog"));
        // Values as Kafka's changelogs hold them: the DSL's timestamped ones without their
        // timestamp, the plain window store's as they are.
        let values = |topic: &str, kafka: fn(Bytes) -> Bytes| -> Vec<Bytes> {
            changelog
                .iter()
                .filter(|r| {
                    r.topic == topic && !(topic == "windows-changelog" && r.timestamp == 30)
                })
                .map(|r| kafka(r.value.clone().unwrap()))
                .collect()
        };
        assert_eq!(
            values("windows-changelog", |v| v),
            values("dsl-changelog", changelog_value_to_kafka)
        );
    }

    /// Served from a task's local state (one entry cached), the stores read their windows
    /// from it, their expired keys are deleted from it, and a task over the same local state
    /// (after a restart) finds the same windows and sessions with the same retention.
    #[test]
    fn persistent_stores_are_served_from_and_restored_from_local_state() {
        let dir = tempfile::tempdir().unwrap();
        let task_dir = dir.path().join("0");
        let expected;
        {
            let lock = try_lock(&task_dir).unwrap().unwrap();
            let (state, _) = TaskState::open(task_dir.clone(), lock).unwrap();
            let state = Arc::new(state);
            let mut running = task();
            let attached = running.attach_local_state(&state, 1);
            assert!(attached.contains(&"windows".to_string()), "{attached:?}");
            assert!(attached.contains(&"sessions".to_string()), "{attached:?}");
            for (key, time) in INPUT {
                running.process(&record(key, time)).unwrap();
                // What the runtime's commit writes: the changelog records, then the local
                // state deletions of what retention dropped.
                let mut records: Vec<LocalRecord> = running
                    .take_outputs()
                    .into_iter()
                    .map(|r| {
                        let store = r.topic.trim_end_matches("-changelog").to_string();
                        (store, r.key.unwrap(), r.value)
                    })
                    .collect();
                records.extend(running.take_expired());
                state.commit(&records, &HashMap::new()).unwrap();
                running.local_state_written();
            }
            expected = contents(&running);
            // An in-memory run of the same records gives the same stores.
            let mut memory = task();
            for (key, time) in INPUT {
                memory.process(&record(key, time)).unwrap();
            }
            assert_eq!(contents(&memory), expected);
            // The expired windows are gone from the local state too.
            let mut stored = Vec::new();
            state
                .visit_keys("windows", |key| stored.push(key.to_vec()))
                .unwrap();
            assert_eq!(stored.len(), 2, "{stored:?}");
            state.persist().unwrap();
        }
        let lock = try_lock(&task_dir).unwrap().unwrap();
        let (state, _) = TaskState::open(task_dir, lock).unwrap();
        let state = Arc::new(state);
        let mut restarted = task();
        restarted.attach_local_state(&state, 1);
        assert_eq!(contents(&restarted), expected);
        // Its retention goes on from the latest time in the local state: a window of 100
        // (expired at 400) stays out.
        restarted.process(&record("b", 199)).unwrap();
        let windows = restarted
            .topology()
            .window_store::<String, i64>("windows")
            .unwrap();
        assert_eq!(windows.fetch(&"b".to_string(), 100), None);
    }
}
