//! Window and session stores for processors (Kafka's `WindowStore` and `SessionStore` from
//! `Stores.windowStoreBuilder` and `Stores.sessionStoreBuilder`): the DSL's windowed stores
//! ([`WindowedStore`], its [`StoreRetention`], its changelog and local state), written by a
//! processor through a handle.

use std::any::Any;
use std::ops::RangeBounds;
use std::sync::Arc;
use std::time::Duration;

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
