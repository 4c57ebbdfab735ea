//! Windowed aggregations: [`TimeWindowedKStream`] (time windows, tumbling or hopping, and
//! sliding windows) and [`SessionWindowedKStream`].

use std::collections::BTreeSet;
use std::sync::Arc;

use parking_lot::Mutex;

use bytes::Bytes;

use crate::Error;
use crate::kstream::{Materialized, Update, aggregate_into, folding, reducing, register_store};
use crate::ktable::{Change, KTable};
use crate::serdes::{I64Serde, SessionWindowedSerde, TimeWindowedSerde, WindowStoreKeySerde};
use crate::store::{
    Entries, SharedStore, StoreEntries, ValueFormat, WindowedRetention, logged_store,
    register_persistent_windowed_store, write_changelog,
};
use crate::topology::{BuilderState, Context, Data, Node, Record, SerdeRef};
use crate::window::{SessionWindows, SlidingWindows, TimeWindows, Window, Windowed};
use crate::window_store::{WindowedStore, WindowedStoreKind, register_windowed_store};

/// A windowed store's changelog serdes: the windowed key's and the aggregate's.
type WindowLogging<K, VR> = (SerdeRef<Windowed<K>>, SerdeRef<VR>);

/// The windows of a [`TimeWindowedKStream`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum TimeWindowing {
    Time(TimeWindows),
    Sliding(SlidingWindows),
}

/// A grouped stream with time windows (tumbling, hopping or sliding), ready for an
/// aggregation (Kafka's `TimeWindowedKStream`). Results are keyed by [`Windowed<K>`]; a
/// record is dropped for each window of it that has closed, and counted in
/// [`TaskMetrics::dropped_late`](crate::TaskMetrics::dropped_late).
pub struct TimeWindowedKStream<K, V> {
    pub(crate) node: Node<K, V>,
    pub(crate) state: Arc<Mutex<BuilderState>>,
    pub(crate) store_name: Option<String>,
    pub(crate) windows: TimeWindowing,
    pub(crate) retention_ms: Option<i64>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
}

impl<K, V> std::fmt::Debug for TimeWindowedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeWindowedKStream")
            .field("store_name", &self.store_name)
            .field("windows", &self.windows)
            .finish()
    }
}

impl<K: Data + Ord, V: Data> TimeWindowedKStream<K, V> {
    /// Names the state store of the aggregation that follows; otherwise it gets a generated
    /// name, [`KTable::store_name`].
    pub fn materialized_as(self, store_name: &str) -> Self {
        Self {
            store_name: Some(store_name.to_string()),
            ..self
        }
    }

    /// The number of records per key and window.
    pub fn count(&self) -> KTable<Windowed<K>, i64> {
        self.count_with(Materialized::default())
    }

    /// [`TimeWindowedKStream::count`] with the store's name, key serde and retention from
    /// `materialized` (the count's serde is [`I64Serde`] unless it gives one).
    pub fn count_with(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        self.aggregate_with(|| 0, |_, _, count| count + 1, counted(materialized))
    }

    /// Combines each key's values per window with `reducer(aggregate, value)`.
    pub fn reduce(
        &self,
        reducer: impl FnMut(V, V) -> V + Send + 'static,
    ) -> KTable<Windowed<K>, V> {
        self.aggregation(reducing(reducer), self.value_serde.clone())
    }

    /// Folds each key's values per window into an aggregate that starts at `initializer()`.
    /// A time-window store needs a serde for the aggregate (its changelog): give it with
    /// [`TimeWindowedKStream::aggregate_with`], or the topology is refused.
    pub fn aggregate<VR: Data>(
        &self,
        initializer: impl FnMut() -> VR + Send + 'static,
        aggregator: impl FnMut(&K, V, VR) -> VR + Send + 'static,
    ) -> KTable<Windowed<K>, VR> {
        self.aggregate_with(initializer, aggregator, Materialized::default())
    }

    /// [`TimeWindowedKStream::aggregate`] with the store's name and the aggregate's serde
    /// from `materialized` (its key serde, if any, replaces the grouped stream's).
    pub fn aggregate_with<VR: Data>(
        &self,
        initializer: impl FnMut() -> VR + Send + 'static,
        aggregator: impl FnMut(&K, V, VR) -> VR + Send + 'static,
        materialized: Materialized<K, VR>,
    ) -> KTable<Windowed<K>, VR> {
        let stream = TimeWindowedKStream {
            node: self.node.clone(),
            state: Arc::clone(&self.state),
            store_name: materialized.store_name.or_else(|| self.store_name.clone()),
            windows: self.windows,
            retention_ms: materialized.retention_ms.or(self.retention_ms),
            key_serde: materialized.key_serde.or_else(|| self.key_serde.clone()),
            value_serde: self.value_serde.clone(),
        };
        let update = folding(initializer, aggregator, |key: &Windowed<K>| &key.key);
        stream.aggregation(update, materialized.value_serde)
    }

    fn aggregation<VR: Data>(
        &self,
        update: Update<Windowed<K>, V, VR>,
        value_serde: Option<SerdeRef<VR>>,
    ) -> KTable<Windowed<K>, VR> {
        // The store logs windowed keys as Kafka's window stores do (the key's bytes, the
        // window start, 8 bytes big-endian, a 4-byte sequence number, 0); the end follows
        // from the window size.
        let store_name = self.store_name.clone().unwrap_or_else(|| {
            self.state
                .lock()
                .generated_name("KSTREAM-AGGREGATE-STATE-STORE")
        });
        let size_ms = match self.windows {
            TimeWindowing::Time(windows) => windows.size_ms(),
            TimeWindowing::Sliding(windows) => windows.time_difference_ms,
        };
        let size = std::time::Duration::from_millis(u64::try_from(size_ms).unwrap_or(0));
        // The table's windowed keys, as downstream operators (a suppression's buffer) write
        // them: Kafka's TimeWindowedSerde, without the store's sequence number.
        let table_key_serde = self.key_serde.as_ref().map(|key_serde| {
            Arc::new(TimeWindowedSerde::new(Arc::clone(key_serde), size)) as SerdeRef<Windowed<K>>
        });
        let logging = match (&self.key_serde, value_serde) {
            (Some(key_serde), Some(value_serde)) => {
                let key_serde: SerdeRef<Windowed<K>> =
                    Arc::new(WindowStoreKeySerde::new(Arc::clone(key_serde), size));
                Some((key_serde, value_serde))
            }
            (key_serde, value_serde) => {
                let missing = match (key_serde.is_none(), value_serde.is_none()) {
                    (true, true) => "a key serde and a value serde",
                    (true, false) => "a key serde",
                    _ => "a value serde",
                };
                self.state.lock().errors.push(format!(
                    "{store_name}: the windowed aggregation's store needs {missing} for its \
                     changelog topic {store_name}-changelog (give them with Grouped::with or \
                     Materialized::with)"
                ));
                None
            }
        };
        // The table carries the store's serdes, which a suppression downstream logs with.
        let serdes = logging.clone();
        let mut table = match self.windows {
            TimeWindowing::Time(windows) => {
                self.time_aggregation(windows, update, store_name, logging)
            }
            TimeWindowing::Sliding(windows) => sliding_aggregation(
                &self.node,
                &self.state,
                store_name,
                windows,
                update,
                logging,
                self.retention_ms,
            ),
        };
        if let Some((_, value_serde)) = serdes {
            table.key_serde = table_key_serde;
            table.value_serde = Some(value_serde);
        }
        table
    }

    fn time_aggregation<VR: Data>(
        &self,
        windows: TimeWindows,
        update: Update<Windowed<K>, V, VR>,
        store_name: String,
        logging: Option<WindowLogging<K, VR>>,
    ) -> KTable<Windowed<K>, VR> {
        // Kafka's least, and since 4.0 default, retention for time windows (3.x kept a day by
        // default, through the `maintainMs` 4.0 removed).
        let least = windows.size_ms.saturating_add(windows.grace_ms);
        let period = checked_retention(
            &self.state,
            &store_name,
            self.retention_ms,
            least,
            "window size plus the grace period",
        );
        let store: SharedStore<Windowed<K>, VR> = crate::store::new_store();
        let name = register_store(&self.state, Some(store_name), &store);
        let windowed = Node::<Windowed<K>, V>::new();
        let table = aggregate_into(
            &windowed,
            &self.state,
            name.clone(),
            &store,
            update,
            Some(windows.grace_ms),
            logging.clone(),
        );
        let retention = StoreRetention::register(
            &self.state,
            &name,
            WindowedStoreKind::Window,
            period,
            &store,
            logging,
        );
        let mut observed = ObservedStreamTime::default();
        self.node.add_sink(move |ctx, record| {
            // Kafka's KStreamWindowAggregate: a window takes records while its end is after
            // stream time minus grace; a record is dropped (and counted) per closed window.
            // A window still open is never expired (the retention covers size plus grace).
            let close = observed
                .advance(record.timestamp)
                .saturating_sub(windows.grace_ms);
            for window in windows.windows_for(record.timestamp) {
                if window.end <= close {
                    ctx.metrics.dropped_late += 1;
                    continue;
                }
                {
                    // Before the aggregation reads the window: a new task's store may hold
                    // windows expired by its restored latest time, which Kafka's store does
                    // not return (its processors' time starts over, see ObservedStreamTime).
                    let mut entries = store.lock();
                    let mut held = retention.lock();
                    held.observe(window.start);
                    retention.purge(ctx, &mut held, &mut entries)?;
                }
                let key = Windowed {
                    key: record.key.clone(),
                    window,
                };
                windowed.forward(
                    ctx,
                    Record {
                        key,
                        value: record.value.clone(),
                        timestamp: record.timestamp,
                    },
                )?;
            }
            Ok(())
        });
        table
    }
}

/// A count's `materialized`, with [`I64Serde`] for the count unless it gives a serde.
fn counted<K: 'static>(materialized: Materialized<K, i64>) -> Materialized<K, i64> {
    match materialized.value_serde {
        Some(_) => materialized,
        None => materialized.with_value_serde(I64Serde),
    }
}

/// The retention of the windowed store `name`: the one asked for (or `least`), refusing the
/// topology when that is under `least`, what the windows need (`needs` says what it is), as
/// Kafka refuses it.
fn checked_retention(
    state: &Arc<Mutex<BuilderState>>,
    name: &str,
    asked: Option<i64>,
    least: i64,
    needs: &str,
) -> i64 {
    let period = asked.unwrap_or(least);
    if period < least {
        state.lock().errors.push(format!(
            "{name}: the retention period of the window store must be no smaller than its \
             {needs} ({least} ms), got {period} ms"
        ));
    }
    period
}

/// The stream time a windowed aggregation closes its windows by: the largest timestamp of the
/// records that reached it (Kafka's per-processor `observedStreamTime`), not the task's, which
/// also moves with the task's other topics: a task reads a rekeyed stream's source topic ahead
/// of the repartitioned copies its aggregation sees, and with the task's time those copies
/// would be late. As in Kafka it starts over with the task (a new task, a restart).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ObservedStreamTime(i64);

impl Default for ObservedStreamTime {
    fn default() -> Self {
        Self(i64::MIN)
    }
}

impl ObservedStreamTime {
    /// Observes a record's timestamp; returns the stream time.
    pub(crate) fn advance(&mut self, timestamp: i64) -> i64 {
        self.0 = self.0.max(timestamp);
        self.0
    }
}

/// A window or session store's retention, as Kafka's in-memory stores keep it: an entry
/// whose time (a window's start, a session's end) is at or before the latest time put minus
/// the retention period has expired. Expired entries are not seen by the aggregation and are
/// dropped from the store, in one sweep each time the latest time has moved on by a period,
/// so the cost of sweeping stays proportional to what is put.
pub(crate) struct Retention {
    period: i64,
    observed: i64,
    swept_at: i64,
}

impl Retention {
    pub(crate) fn new(period: i64) -> Self {
        Self {
            period,
            observed: i64::MIN,
            swept_at: i64::MIN,
        }
    }

    pub(crate) fn observe(&mut self, time: i64) {
        self.observed = self.observed.max(time);
    }

    /// Entries with a time at or before this have expired.
    pub(crate) fn expired_until(&self) -> i64 {
        self.observed.saturating_sub(self.period)
    }

    /// The latest time put.
    pub(crate) fn latest(&self) -> i64 {
        self.observed
    }

    /// Whether the latest time moved on by a period since the last sweep: then it is time
    /// for another.
    pub(crate) fn sweep_due(&mut self) -> bool {
        if self.observed.saturating_sub(self.swept_at) < self.period.max(1) {
            return false;
        }
        self.swept_at = self.observed;
        true
    }
}

/// A windowed store's retention and what it needs to drop expired entries from the task's
/// local state as well.
pub(crate) struct StoreRetention<K> {
    name: String,
    kind: WindowedStoreKind,
    retention: Arc<Mutex<Retention>>,
    key_serde: Option<SerdeRef<Windowed<K>>>,
}

impl<K: Data + Ord> StoreRetention<K> {
    /// Registers `store` as the windowed store `name`, kept for `period` ms, for window or
    /// session queries; a restore from its changelog or local state moves its latest time as
    /// the records it puts back do, so restored entries that have expired are not queried,
    /// and are dropped at the next sweep. Logged (with `logging`'s serdes), it is one a task
    /// with local state serves from it (persistent).
    pub(crate) fn register<V: Data>(
        state: &Arc<Mutex<BuilderState>>,
        name: &str,
        kind: WindowedStoreKind,
        period: i64,
        store: &SharedStore<Windowed<K>, V>,
        logging: Option<WindowLogging<K, V>>,
    ) -> Self {
        Self::register_in(
            &mut state.lock(),
            name,
            (kind, period),
            store,
            logging,
            Some(ValueFormat::Timestamped),
        )
    }

    /// As [`StoreRetention::register`]; a logged store is persistent only with a
    /// `persistent` value format (the processor API's in-memory stores are not, and its
    /// persistent ones keep plain values).
    pub(crate) fn register_in<V: Data>(
        state: &mut BuilderState,
        name: &str,
        (kind, period): (WindowedStoreKind, i64),
        store: &SharedStore<Windowed<K>, V>,
        logging: Option<WindowLogging<K, V>>,
        persistent: Option<ValueFormat>,
    ) -> Self {
        let retention = Arc::new(Mutex::new(Retention::new(period)));
        let key_serde = logging.as_ref().map(|(key_serde, _)| Arc::clone(key_serde));
        if let (Some(serdes), Some(format)) = (logging, persistent) {
            let windowed = WindowedRetention {
                kind,
                retention: Arc::clone(&retention),
            };
            register_persistent_windowed_store(state, name, store, serdes, (windowed, format));
        }
        register_windowed_store(
            state,
            name,
            WindowedStore {
                kind,
                entries: Arc::clone(store),
                retention: Arc::clone(&retention),
            },
        );
        if let Some(mut restore) = state.restorers.remove(name) {
            let observed = Arc::clone(&retention);
            state.restorers.insert(
                name.to_string(),
                Box::new(move |key, value| {
                    if let (Some(key), Some(_)) = (key, value)
                        && let Some(time) = kind.time_in_changelog_key(key)
                    {
                        observed.lock().observe(time);
                    }
                    restore(key, value)
                }),
            );
        }
        Self {
            name: name.to_string(),
            kind,
            retention,
            key_serde,
        }
    }

    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, Retention> {
        self.retention.lock()
    }

    /// The retention, shared with the store's read-only views.
    pub(crate) fn shared(&self) -> &Arc<Mutex<Retention>> {
        &self.retention
    }

    /// Drops the expired entries of `entries`, if the latest time moved on by a period since
    /// the last sweep (so the cost of sweeping stays proportional to what is put), and from
    /// the task's local state (they are not logged to the changelog: Kafka's dropped segments
    /// are not).
    pub(crate) fn purge<V: Clone>(
        &self,
        ctx: &mut Context,
        retention: &mut Retention,
        entries: &mut StoreEntries<Windowed<K>, V>,
    ) -> Result<(), Error> {
        for key in self.expire(retention, entries)? {
            ctx.expired.push((self.name.clone(), key, None));
        }
        Ok(())
    }

    /// What [`StoreRetention::purge`] does, for a caller without the task's context (a
    /// processor's store handle): returns the keys to delete from the task's local state.
    pub(crate) fn expire<V: Clone>(
        &self,
        retention: &mut Retention,
        entries: &mut StoreEntries<Windowed<K>, V>,
    ) -> Result<Vec<Bytes>, Error> {
        let (dropped, stored) = if retention.sweep_due() {
            entries.drop_expired(self.kind, retention.expired_until())
        } else {
            // A sweep goes on a step per record.
            entries.continue_sweep(self.kind)
        };
        let Some(key_serde) = &self.key_serde else {
            return Ok(Vec::new());
        };
        let mut expired = Vec::with_capacity(dropped.len() + stored.len());
        for key in dropped {
            expired.push(Bytes::from(key_serde.serialize(&key)?));
        }
        expired.extend(stored.into_iter().map(Bytes::from));
        Ok(expired)
    }
}

/// The key's windows (or sessions) whose start lies in `[from, to]`, oldest first.
pub(crate) fn key_range<'a, K: Ord + Clone, VR>(
    entries: &'a Entries<Windowed<K>, VR>,
    key: &K,
    from: i64,
    to: i64,
) -> impl Iterator<Item = (&'a Windowed<K>, &'a (VR, i64))> {
    let low = Windowed {
        key: key.clone(),
        window: Window {
            start: from,
            end: i64::MIN,
        },
    };
    let high = Windowed {
        key: key.clone(),
        window: Window {
            start: to,
            end: i64::MAX,
        },
    };
    let range = if from <= to {
        Some(entries.range(low..=high))
    } else {
        None
    };
    range.into_iter().flatten()
}

/// The state of one record's pass through a sliding-window aggregation: Kafka's
/// `KStreamSlidingWindowAggregate`, with its window store's retention (a window whose start
/// is at or before the latest start put minus `2 * timeDifference + grace` has expired).
struct SlidingPass<'a, K, V, VR> {
    entries: &'a mut StoreEntries<Windowed<K>, VR>,
    update: &'a mut Update<Windowed<K>, V, VR>,
    ctx: &'a mut Context,
    retention: &'a mut Retention,
    out: Vec<Record<Windowed<K>, Change<VR>>>,
    key: K,
    value: V,
    timestamp: i64,
    close: i64,
    difference: i64,
}

/// A window found for the record: the window, its aggregate, the largest timestamp in it.
type Found<VR> = (Window, VR, i64);

impl<K: Data + Ord, V: Data, VR: Data> SlidingPass<'_, K, V, VR> {
    fn fetch(&mut self, from: i64, to: i64) -> Vec<Found<VR>> {
        let live = self.retention.expired_until().saturating_add(1);
        self.entries
            .windows(WindowedStoreKind::Window, &self.key, from.max(live), to)
            .into_iter()
            .map(|(key, (value, timestamp))| (key.window, value, timestamp))
            .collect()
    }

    fn windowed(&self, window: Window) -> Windowed<K> {
        Windowed {
            key: self.key.clone(),
            window,
        }
    }

    fn put(&mut self, window: Window, value: VR, timestamp: i64) -> Option<VR> {
        self.retention.observe(window.start);
        self.entries
            .insert(self.windowed(window), (value, timestamp))
            .map(|(old, _)| old)
    }

    /// Adds the record to `window`, whose aggregate so far is `aggregate` (`None`: a new
    /// window), unless the window has closed.
    fn update_window(&mut self, window: Window, aggregate: Option<(VR, i64)>) {
        if window.end < self.close {
            self.ctx.metrics.dropped_late += 1;
            return;
        }
        let (aggregate, timestamp) = match aggregate {
            Some((aggregate, timestamp)) => (Some(aggregate), timestamp.max(self.timestamp)),
            None => (None, self.timestamp),
        };
        let key = self.windowed(window);
        let value = (self.update)(&key, self.value.clone(), aggregate);
        let old = self.put(window, value.clone(), timestamp);
        self.out.push(Record {
            key,
            value: Change {
                new: Some(value),
                old,
            },
            timestamp,
        });
    }

    /// The record's right window `[t + 1, t + 1 + difference]`, holding the records after
    /// it that `aggregate` holds (not the record itself).
    fn create_right_window(&mut self, (aggregate, timestamp): (VR, i64)) {
        let start = self.timestamp + 1;
        let window = Window {
            start,
            end: start + self.difference,
        };
        let old = self.put(window, aggregate.clone(), timestamp);
        self.out.push(Record {
            key: self.windowed(window),
            value: Change {
                new: Some(aggregate),
                old,
            },
            timestamp,
        });
    }

    fn window_from(&self, start: i64) -> Window {
        Window {
            start,
            end: start + self.difference,
        }
    }

    /// A record at or after `difference`. Kafka's stores iterate backwards, so windows are
    /// updated latest start first (its `processReverse`), and the scan stops at the first
    /// window that ends before the record: the previous record's.
    fn process_in_order(&mut self) {
        let t = self.timestamp;
        let mut starts = BTreeSet::new();
        let (mut left_aggregate, mut right_aggregate) = (None, None);
        let (mut left_exists, mut right_exists) = (false, false);
        let mut previous = None;
        // The windows that can hold the record, its left window's neighbour, and its right
        // window.
        for (window, aggregate, max_timestamp) in self
            .fetch((t - 2 * self.difference).max(0), t + 1)
            .into_iter()
            .rev()
        {
            starts.insert(window.start);
            let end = window.start + self.difference;
            if window.start == t + 1 {
                right_exists = true;
            } else if end > t {
                if right_aggregate.is_none() {
                    right_aggregate = Some((aggregate.clone(), max_timestamp));
                }
                self.update_window(window, Some((aggregate, max_timestamp)));
            } else if end == t {
                left_exists = true;
                self.update_window(window, Some((aggregate, max_timestamp)));
                if max_timestamp < t {
                    previous = Some(max_timestamp);
                } else {
                    // A record at this very time came before: its windows exist already.
                    return;
                }
            } else {
                left_aggregate = Some(aggregate);
                previous = Some(max_timestamp);
                break;
            }
        }
        // The previous record's right window, when the record falls in it.
        if let Some(previous) = previous {
            let start = previous + 1;
            if !starts.contains(&start) && start + self.difference >= t {
                self.update_window(self.window_from(start), None);
            }
        }
        if !left_exists {
            // The left window holds what the window ending before it holds, when the
            // previous record is in range.
            let aggregate = match (previous, left_aggregate) {
                (Some(previous), Some(aggregate)) if t - self.difference <= previous => {
                    Some((aggregate, t))
                }
                _ => None,
            };
            self.update_window(self.window_from(t - self.difference), aggregate);
        }
        if let Some(right) = right_aggregate.filter(|(_, max)| !right_exists && *max > t) {
            self.create_right_window(right);
        }
    }

    /// A record before `difference`: its left window would start before the epoch, so it
    /// goes in the window `[0, difference]` that holds every such record.
    fn process_early(&mut self) {
        let t = self.timestamp;
        let mut starts = BTreeSet::new();
        let mut combined = None;
        let mut right_aggregate = None;
        let mut right_exists = false;
        let mut previous = None;
        for (window, aggregate, max_timestamp) in self.fetch(0, t + 1) {
            starts.insert(window.start);
            if window.start == 0 {
                if max_timestamp < t {
                    previous = Some(max_timestamp);
                }
                combined = Some((window, aggregate, max_timestamp));
            } else if window.start <= t {
                right_aggregate = Some((aggregate.clone(), max_timestamp));
                self.update_window(window, Some((aggregate, max_timestamp)));
            } else if window.start == t + 1 {
                right_exists = true;
            }
        }
        // Without a window between, the combined window holds only records after this one
        // when its latest record is later.
        if right_aggregate.is_none() {
            right_aggregate = combined
                .as_ref()
                .filter(|(_, _, max)| *max > t)
                .map(|(_, aggregate, max)| (aggregate.clone(), *max));
        }
        if let Some(right) = right_aggregate.filter(|(_, max)| !right_exists && *max > t) {
            self.create_right_window(right);
        }
        if let Some(previous) = previous
            && !starts.contains(&(previous + 1))
        {
            self.update_window(self.window_from(previous + 1), None);
        }
        match combined {
            Some((window, aggregate, max)) => self.update_window(window, Some((aggregate, max))),
            None => self.update_window(self.window_from(0), None),
        }
    }
}

fn sliding_aggregation<K: Data + Ord, V: Data, VR: Data>(
    node: &Node<K, V>,
    state: &Arc<Mutex<BuilderState>>,
    store_name: String,
    windows: SlidingWindows,
    mut update: Update<Windowed<K>, V, VR>,
    logging: Option<WindowLogging<K, VR>>,
    retention_ms: Option<i64>,
) -> KTable<Windowed<K>, VR> {
    let store: SharedStore<Windowed<K>, VR> = crate::store::new_store();
    let name = register_store(state, Some(store_name), &store);
    let serdes = logging.clone();
    // Every change of the store is one of the records forwarded: they are what is logged.
    // Windows dropped by retention are not logged, as Kafka's dropped segments are not.
    let changelog = logging.map(|(key_serde, value_serde)| {
        let topic = logged_store(
            &mut state.lock(),
            &name,
            &store,
            Arc::clone(&key_serde),
            Arc::clone(&value_serde),
            ValueFormat::Timestamped,
        );
        (topic, key_serde, value_serde)
    });
    let table = Node::new();
    let next = table.clone();
    let shared = Arc::clone(&store);
    let difference = windows.time_difference_ms;
    // Kafka's least (and default) retention for sliding windows.
    let least = difference
        .saturating_mul(2)
        .saturating_add(windows.grace_ms);
    let period = checked_retention(
        state,
        &name,
        retention_ms,
        least,
        "twice the time difference plus the grace period",
    );
    let retention = StoreRetention::register(
        state,
        &name,
        WindowedStoreKind::Window,
        period,
        &store,
        serdes,
    );
    let mut observed = ObservedStreamTime::default();
    node.add_sink(move |ctx, record| {
        let close = observed
            .advance(record.timestamp)
            .saturating_sub(windows.grace_ms);
        // Even the record's right window would be closed.
        if record.timestamp + 1 + difference <= close {
            ctx.metrics.dropped_late += 1;
            return Ok(());
        }
        let out = {
            let mut entries = shared.lock();
            let mut held = retention.lock();
            let mut pass = SlidingPass {
                entries: &mut entries,
                update: &mut update,
                ctx: &mut *ctx,
                retention: &mut held,
                out: Vec::new(),
                key: record.key,
                value: record.value,
                timestamp: record.timestamp,
                close,
                difference,
            };
            if record.timestamp < difference {
                pass.process_early();
            } else {
                pass.process_in_order();
            }
            let out = pass.out;
            retention.purge(ctx, &mut held, &mut entries)?;
            out
        };
        for record in out {
            if let Some((topic, key_serde, value_serde)) = &changelog {
                write_changelog(
                    ctx,
                    topic,
                    &**key_serde,
                    &**value_serde,
                    &record.key,
                    record.value.new.as_ref(),
                    record.timestamp,
                )?;
            }
            next.forward(ctx, record)?;
        }
        Ok(())
    });
    KTable::materialized(table, state, name, store, Some(windows.grace_ms))
}

/// A grouped stream with session windows, ready for an aggregation (Kafka's
/// `SessionWindowedKStream`). Results are keyed by [`Windowed<K>`] whose window is the
/// session `[first, last]` timestamp. When a record extends or merges sessions, each session
/// it replaces is deleted: a tombstone for its windowed key is forwarded before the new
/// session's aggregate, as Kafka does.
pub struct SessionWindowedKStream<K, V> {
    pub(crate) node: Node<K, V>,
    pub(crate) state: Arc<Mutex<BuilderState>>,
    pub(crate) store_name: Option<String>,
    pub(crate) windows: SessionWindows,
    pub(crate) retention_ms: Option<i64>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
}

impl<K, V> std::fmt::Debug for SessionWindowedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionWindowedKStream")
            .field("store_name", &self.store_name)
            .field("windows", &self.windows)
            .finish()
    }
}

/// A session aggregation: where a key's aggregate starts (`None` for reduce: the first
/// value), how a record updates it, and how two sessions' aggregates merge.
struct SessionOps<K, V, VR> {
    initializer: Box<dyn FnMut() -> Option<VR> + Send>,
    update: Update<K, V, VR>,
    merger: Merger<K, VR>,
}

/// Kafka's `Merger`: combines the aggregates of two sessions being merged.
type Merger<K, VR> = Box<dyn FnMut(&K, VR, VR) -> VR + Send>;

impl<K: Data + Ord, V: Data> SessionWindowedKStream<K, V> {
    /// Names the state store of the aggregation that follows.
    pub fn materialized_as(self, store_name: &str) -> Self {
        Self {
            store_name: Some(store_name.to_string()),
            ..self
        }
    }

    /// The number of records per session.
    pub fn count(&self) -> KTable<Windowed<K>, i64> {
        self.count_with(Materialized::default())
    }

    /// [`SessionWindowedKStream::count`] with the store's name, key serde and retention from
    /// `materialized` (the count's serde is [`I64Serde`] unless it gives one).
    pub fn count_with(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        self.aggregate_with(
            || 0,
            |_, _, count| count + 1,
            |_, a, b| a + b,
            counted(materialized),
        )
    }

    /// Combines each session's values with `reducer(aggregate, value)`; merged sessions
    /// combine with it too.
    pub fn reduce(
        &self,
        reducer: impl FnMut(V, V) -> V + Send + 'static,
    ) -> KTable<Windowed<K>, V> {
        let reducer = Arc::new(Mutex::new(reducer));
        let shared = Arc::clone(&reducer);
        self.aggregation(
            SessionOps {
                initializer: Box::new(|| None),
                update: reducing(move |a, b| (shared.lock())(a, b)),
                merger: Box::new(move |_, a, b| (reducer.lock())(a, b)),
            },
            self.value_serde.clone(),
        )
    }

    /// Folds each session's values into an aggregate that starts at `initializer()`; when a
    /// record merges sessions, their aggregates combine with `merger(key, a, b)` (Kafka's
    /// `Merger`) from `initializer()`, in the order the sessions end. The session store
    /// needs a serde for the aggregate (its changelog): give it with
    /// [`SessionWindowedKStream::aggregate_with`], or the topology is refused.
    pub fn aggregate<VR: Data>(
        &self,
        initializer: impl FnMut() -> VR + Send + 'static,
        aggregator: impl FnMut(&K, V, VR) -> VR + Send + 'static,
        merger: impl FnMut(&K, VR, VR) -> VR + Send + 'static,
    ) -> KTable<Windowed<K>, VR> {
        self.aggregate_with(initializer, aggregator, merger, Materialized::default())
    }

    /// [`SessionWindowedKStream::aggregate`] with the store's name and the aggregate's serde
    /// from `materialized` (its key serde, if any, replaces the grouped stream's).
    pub fn aggregate_with<VR: Data>(
        &self,
        initializer: impl FnMut() -> VR + Send + 'static,
        aggregator: impl FnMut(&K, V, VR) -> VR + Send + 'static,
        merger: impl FnMut(&K, VR, VR) -> VR + Send + 'static,
        materialized: Materialized<K, VR>,
    ) -> KTable<Windowed<K>, VR> {
        let stream = SessionWindowedKStream {
            node: self.node.clone(),
            state: Arc::clone(&self.state),
            store_name: materialized.store_name.or_else(|| self.store_name.clone()),
            windows: self.windows,
            retention_ms: materialized.retention_ms.or(self.retention_ms),
            key_serde: materialized.key_serde.or_else(|| self.key_serde.clone()),
            value_serde: self.value_serde.clone(),
        };
        let initializer = Arc::new(Mutex::new(initializer));
        let shared = Arc::clone(&initializer);
        stream.aggregation(
            SessionOps {
                initializer: Box::new(move || Some((shared.lock())())),
                update: folding(move || (initializer.lock())(), aggregator, |key: &K| key),
                merger: Box::new(merger),
            },
            materialized.value_serde,
        )
    }

    fn aggregation<VR: Data>(
        &self,
        mut ops: SessionOps<K, V, VR>,
        value_serde: Option<SerdeRef<VR>>,
    ) -> KTable<Windowed<K>, VR> {
        let store: SharedStore<Windowed<K>, VR> = crate::store::new_store();
        let name = register_store(&self.state, self.store_name.clone(), &store);
        // Sessions are logged with Kafka's session-windowed key format (key, end, start);
        // a merged session is deleted with a tombstone. Sessions dropped by retention are
        // not logged, as Kafka's dropped segments are not.
        let changelog = match (&self.key_serde, value_serde) {
            (Some(key_serde), Some(value_serde)) => {
                let key_serde: SerdeRef<Windowed<K>> =
                    Arc::new(SessionWindowedSerde::new(Arc::clone(key_serde)));
                let topic = logged_store(
                    &mut self.state.lock(),
                    &name,
                    &store,
                    Arc::clone(&key_serde),
                    Arc::clone(&value_serde),
                    ValueFormat::Timestamped,
                );
                Some((topic, key_serde, value_serde))
            }
            (key_serde, value_serde) => {
                let missing = match (key_serde.is_none(), value_serde.is_none()) {
                    (true, true) => "a key serde and a value serde",
                    (true, false) => "a key serde",
                    _ => "a value serde",
                };
                self.state.lock().errors.push(format!(
                    "{name}: the session aggregation's store needs {missing} for its changelog \
                     topic {name}-changelog (give them with Grouped::with or \
                     Materialized::with)"
                ));
                None
            }
        };
        let serdes = changelog.clone();
        let table = Node::new();
        let next = table.clone();
        let shared = Arc::clone(&store);
        let SessionWindows { gap_ms, grace_ms } = self.windows;
        // Kafka's least (and default) session store retention: gap plus grace, from the
        // latest end put.
        let period = checked_retention(
            &self.state,
            &name,
            self.retention_ms,
            gap_ms.saturating_add(grace_ms),
            "inactivity gap plus the grace period",
        );
        let logging = changelog
            .as_ref()
            .map(|(_, key_serde, value_serde)| (Arc::clone(key_serde), Arc::clone(value_serde)));
        let retention = StoreRetention::register(
            &self.state,
            &name,
            WindowedStoreKind::Session,
            period,
            &store,
            logging,
        );
        let mut observed = ObservedStreamTime::default();
        self.node.add_sink(move |ctx, record| {
            let t = record.timestamp;
            // Kafka's KStreamSessionWindowAggregate (3.3+): a session is closed once it
            // ends before stream time minus grace minus the inactivity gap, so a record is
            // late only when no session it could start or join is still open.
            let close = observed
                .advance(t)
                .saturating_sub(grace_ms)
                .saturating_sub(gap_ms);
            let mut out = Vec::new();
            {
                let mut entries = shared.lock();
                let mut held = retention.lock();
                // Kafka's findSessions(key, t - gap, t + gap): sessions ending at or after
                // t - gap that start at or before t + gap, ordered by end. No session ends
                // after the latest end put.
                let earliest_end = t
                    .saturating_sub(gap_ms)
                    .max(held.expired_until().saturating_add(1));
                let latest_start = t.saturating_add(gap_ms);
                let mut found: Vec<(Windowed<K>, VR)> = entries
                    .windows(
                        WindowedStoreKind::Session,
                        &record.key,
                        earliest_end,
                        held.latest(),
                    )
                    .into_iter()
                    .filter(|(key, _)| key.window.start <= latest_start)
                    .map(|(key, (value, _))| (key, value))
                    .collect();
                found.sort_by_key(|(key, _)| (key.window.end, key.window.start));
                let mut aggregate = (ops.initializer)();
                let mut merged = Window { start: t, end: t };
                for (key, value) in &found {
                    aggregate = Some(match aggregate {
                        Some(aggregate) => (ops.merger)(&record.key, aggregate, value.clone()),
                        None => value.clone(),
                    });
                    merged = Window {
                        start: merged.start.min(key.window.start),
                        end: merged.end.max(key.window.end),
                    };
                }
                // A session's end is inclusive: it closes once stream time minus grace is
                // past it.
                if merged.end < close {
                    ctx.metrics.dropped_late += 1;
                } else {
                    let mut old = None;
                    for (key, value) in found {
                        if merged == (Window { start: t, end: t }) {
                            // The record repeats a session of its own instant: updated in
                            // place. Any other merge deletes every session it found, even
                            // one it re-creates with the same bounds (as Kafka does).
                            old = Some(value);
                            continue;
                        }
                        entries.remove(&key);
                        let timestamp = key.window.end;
                        out.push(Record {
                            key,
                            value: Change {
                                new: None,
                                old: Some(value),
                            },
                            timestamp,
                        });
                    }
                    let value = (ops.update)(&record.key, record.value, aggregate);
                    let key = Windowed {
                        key: record.key,
                        window: merged,
                    };
                    held.observe(merged.end);
                    entries.put(key.clone(), Some((value.clone(), merged.end)));
                    retention.purge(ctx, &mut held, &mut entries)?;
                    out.push(Record {
                        key,
                        value: Change {
                            new: Some(value),
                            old,
                        },
                        timestamp: merged.end,
                    });
                }
            }
            for record in out {
                if let Some((topic, key_serde, value_serde)) = &changelog {
                    // Kafka's session store is not timestamped: its changelog records carry
                    // the timestamp of the record being processed.
                    write_changelog(
                        ctx,
                        topic,
                        &**key_serde,
                        &**value_serde,
                        &record.key,
                        record.value.new.as_ref(),
                        t,
                    )?;
                }
                next.forward(ctx, record)?;
            }
            Ok(())
        });
        // Kafka's suppression waits the inactivity gap too: a session can still grow until
        // stream time passes its end by gap plus grace.
        let suppress_after = Some(gap_ms.saturating_add(grace_ms));
        let mut table = KTable::materialized(table, &self.state, name, store, suppress_after);
        if let Some((_, key_serde, value_serde)) = serdes {
            table.key_serde = Some(key_serde);
            table.value_serde = Some(value_serde);
        }
        table
    }
}
