//! Stream-stream windowed joins (Kafka's `KStreamKStreamJoin`): both sides buffered in
//! window stores, left/outer results for records that found no partner emitted once their
//! join window has closed.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::Error;
use crate::kstream::KStream;
use crate::store::{
    ValueFormat, decode_value, encode_change, log_change, register_changelog, serialize_key,
    split_window_store_key, window_store_key,
};
use crate::topology::{BuilderState, Context, Data, Node, Record, Restorer, SerdeRef};
use crate::window::JoinWindows;
use crate::windowed::Retention;

/// Which input of the join a record came from. Left sorts before right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Left,
    Right,
}

/// One side's window store: records by key and timestamp (duplicates kept, in arrival
/// order), with Kafka's in-memory window store retention (the windowed stores' [`Retention`]):
/// records at or before the latest timestamp put minus the retention are neither stored nor
/// found, and are dropped in one sweep each time the latest timestamp has moved on by a
/// retention period.
struct JoinStore<K, V> {
    records: BTreeMap<(K, i64, u64), V>,
    retention: Retention,
}

/// Where a buffered record sits in its side's store: key, timestamp, sequence.
type BufferSlot<K> = (K, i64, u64);

impl<K: Ord + Clone, V: Clone> JoinStore<K, V> {
    /// An empty store that keeps records for `retention` ms.
    fn new(retention: i64) -> Self {
        Self {
            records: BTreeMap::new(),
            retention: Retention::new(retention),
        }
    }

    /// Buffers the record unless it is already expired; returns whether it was buffered.
    fn put(&mut self, key: K, timestamp: i64, sequence: u64, value: V) -> bool {
        self.retention.observe(timestamp);
        if timestamp <= self.retention.expired_until() {
            return false;
        }
        self.records.insert((key, timestamp, sequence), value);
        true
    }

    /// Drops the expired records, if the latest timestamp moved on by a retention period
    /// since the last sweep; returns where they were.
    fn sweep(&mut self) -> Vec<BufferSlot<K>> {
        let mut dropped = Vec::new();
        if !self.retention.sweep_due() {
            return dropped;
        }
        let live = self.retention.expired_until();
        self.records.retain(|slot, _| {
            let keep = slot.1 > live;
            if !keep {
                dropped.push(slot.clone());
            }
            keep
        });
        dropped
    }

    fn fetch(&self, key: &K, from: i64, to: i64) -> Vec<(i64, V)> {
        let from = from.max(self.retention.expired_until().saturating_add(1));
        if from > to {
            return Vec::new();
        }
        self.records
            .range((key.clone(), from, 0)..=(key.clone(), to, u64::MAX))
            .map(|((_, timestamp, _), value)| (*timestamp, value.clone()))
            .collect()
    }
}

/// Where one side's buffer is logged: its changelog topic and the serdes of its records.
/// Kafka's join window stores are plain window stores with duplicates retained: the
/// changelog key is [`window_store_key`] (Kafka's seqnum: 31 bits, so the sequence wraps
/// there), the value the serialized value alone.
struct BufferLog<K, V> {
    store: String,
    topic: String,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
}

impl<K: 'static, V: 'static> BufferLog<K, V> {
    fn write(
        &self,
        ctx: &mut Context,
        key: &K,
        timestamp: i64,
        sequence: u64,
        value: &V,
    ) -> Result<(), Error> {
        let (key, value) = encode_change(
            &self.topic,
            (&*self.key_serde, &*self.value_serde),
            key,
            Some(value),
            (ValueFormat::Plain, timestamp),
        )?;
        let key = window_store_key(&key, timestamp, seqnum(sequence));
        log_change(ctx, &self.topic, key, value, timestamp);
        Ok(())
    }

    /// Deletes the records the retention dropped from the task's local state (not from the
    /// changelog: Kafka's dropped segments are not logged either).
    fn expire(&self, ctx: &mut Context, dropped: Vec<BufferSlot<K>>) -> Result<(), Error> {
        for (key, timestamp, sequence) in dropped {
            let key = serialize_key(&self.topic, &*self.key_serde, &key)?;
            let key = window_store_key(&key, timestamp, seqnum(sequence));
            ctx.expired
                .push((self.store.clone(), Bytes::from(key), None));
        }
        Ok(())
    }
}

/// The sequence number a changelog key holds: Kafka's is a non-negative `int`.
fn seqnum(sequence: u64) -> u32 {
    (sequence & 0x7FFF_FFFF) as u32
}

/// Registers the changelog of one side's buffer, `store_name`, and its restorer, which puts
/// each record back through the buffer's own `put` (so records the retention has expired
/// stay out) and moves the join's sequence past the restored ones.
fn logged_buffer<K: Data + Ord, V1: Data, V2: Data, V: Data>(
    builder: &mut BuilderState,
    store_name: &str,
    state: &Arc<Mutex<JoinState<K, V1, V2>>>,
    serdes: (SerdeRef<K>, SerdeRef<V>),
    buffer: fn(&mut JoinState<K, V1, V2>) -> &mut JoinStore<K, V>,
) -> BufferLog<K, V> {
    let (key_serde, value_serde) = serdes;
    let (restored, keys, values) = (
        Arc::clone(state),
        Arc::clone(&key_serde),
        Arc::clone(&value_serde),
    );
    let restorer: Restorer = Box::new(move |key, value| {
        let Some(key) = key else {
            return Ok(());
        };
        let (key, timestamp, seqnum) = split_window_store_key(key)?;
        let key = keys.deserialize(key)?;
        let mut state = restored.lock();
        let sequence = u64::from(seqnum);
        match value {
            Some(data) => {
                let (value, _) = decode_value(ValueFormat::Plain, &*values, data)?;
                buffer(&mut state).put(key, timestamp, sequence, value);
            }
            None => {
                buffer(&mut state)
                    .records
                    .remove(&(key, timestamp, sequence));
            }
        }
        state.sequence = state.sequence.max(sequence);
        state.restored = true;
        Ok(())
    });
    BufferLog {
        store: store_name.to_string(),
        topic: register_changelog(builder, store_name, restorer),
        key_serde,
        value_serde,
    }
}

/// A record waiting for a partner: its value on its own side.
type Unjoined<V1, V2> = (Option<V1>, Option<V2>);

/// Where unjoined records wait: by timestamp, side and key.
type UnjoinedSlot<K> = (i64, Side, K);

/// What both sides of one join share.
struct JoinState<K, V1, V2> {
    left: JoinStore<K, V1>,
    right: JoinStore<K, V2>,
    /// Records still without a partner, waiting for their window to close (left and outer
    /// joins): by timestamp, side and key.
    unjoined: BTreeMap<UnjoinedSlot<K>, Vec<Unjoined<V1, V2>>>,
    /// The largest timestamp seen on either side.
    stream_time: i64,
    /// A lower bound on the timestamps in `unjoined` (Kafka's `minTime`), to skip the scan.
    min_time: i64,
    sequence: u64,
    /// Whether records were restored into the buffers since the last record processed:
    /// `unjoined` is then rebuilt from them before the next record.
    restored: bool,
}

impl<K: Data + Ord, V1: Data, V2: Data> JoinState<K, V1, V2> {
    /// After a restore, rebuilds what the buffers imply: the join's stream time (the latest
    /// timestamp buffered on either side) and, for the outer sides, the records still
    /// waiting for a partner: those whose window has not closed at that stream time (the
    /// ones that had closed were emitted before the handover) and that no record buffered
    /// on the other side joins. Kafka logs these in a third store (its shared outer-join
    /// store); they follow from the two buffers, which are logged.
    fn rebuild_unjoined(&mut self, windows: JoinWindows, outer: (bool, bool)) {
        if !std::mem::take(&mut self.restored) {
            return;
        }
        let now = self
            .left
            .retention
            .latest()
            .max(self.right.retention.latest());
        self.stream_time = self.stream_time.max(now);
        let open = |t: i64, look_ahead: i64| {
            t.saturating_add(look_ahead)
                .saturating_add(windows.grace_ms)
                >= now
        };
        let window = |t: i64, before: i64, after: i64| {
            (
                t.saturating_sub(before).max(0),
                t.saturating_add(after).max(0),
            )
        };
        let mut waiting: Vec<(UnjoinedSlot<K>, Unjoined<V1, V2>)> = Vec::new();
        if outer.0 {
            for ((key, t, _), value) in &self.left.records {
                let (from, to) = window(*t, windows.before_ms, windows.after_ms);
                if open(*t, windows.after_ms) && self.right.fetch(key, from, to).is_empty() {
                    waiting.push(((*t, Side::Left, key.clone()), (Some(value.clone()), None)));
                }
            }
        }
        if outer.1 {
            for ((key, t, _), value) in &self.right.records {
                let (from, to) = window(*t, windows.after_ms, windows.before_ms);
                if open(*t, windows.before_ms) && self.left.fetch(key, from, to).is_empty() {
                    waiting.push(((*t, Side::Right, key.clone()), (None, Some(value.clone()))));
                }
            }
        }
        for (slot, values) in waiting {
            self.min_time = self.min_time.min(slot.0);
            self.unjoined.entry(slot).or_default().push(values);
        }
    }
}

/// The joiner of a join of any kind: `None` when the kind needs a side that is missing.
type JoinerFn<V1, V2, VR> = dyn FnMut(Option<&V1>, Option<&V2>) -> Option<VR> + Send;
type Joiner<V1, V2, VR> = Box<JoinerFn<V1, V2, VR>>;

/// Wires a stream-stream join of `left` and `right`; `outer` says which sides emit a result
/// without a partner (inner: neither; left: the left; outer: both).
pub(crate) fn stream_stream_join<K: Data + Ord, V1: Data, V2: Data, VR: Data>(
    left: &KStream<K, V1>,
    right: &KStream<K, V2>,
    windows: JoinWindows,
    outer: (bool, bool),
    joiner: Joiner<V1, V2, VR>,
) -> KStream<K, VR> {
    // Each side's records of a key must meet in one task: repartitioned if its key changed,
    // and the two sides' topics co-partitioned.
    let (left, right) = (
        &left.repartitioned("KSTREAM-JOINTHIS"),
        &right.repartitioned("KSTREAM-JOINOTHER"),
    );
    let lineage = left.lineage.union(&right.lineage);
    let retention = windows
        .before_ms
        .saturating_add(windows.after_ms)
        .saturating_add(windows.grace_ms);
    let state = Arc::new(Mutex::new(JoinState {
        left: JoinStore::new(retention),
        right: JoinStore::new(retention),
        unjoined: BTreeMap::new(),
        stream_time: i64::MIN,
        min_time: i64::MAX,
        sequence: 0,
        restored: false,
    }));
    let (left_log, right_log) = {
        let mut builder = left.state.lock();
        let name = format!("KSTREAM-JOIN-{:010}", builder.copartition_groups.len() + 1);
        builder.copartition(&name, &lineage.sources);
        // Kafka's names for the two window stores: KSTREAM-JOINTHIS-<n>-store and
        // KSTREAM-JOINOTHER-<n>-store. Both are logged when the serdes of the key and of
        // both values are known; a side whose serde was dropped (map_values...) cannot be.
        let this_store = format!("{}-store", builder.generated_name("KSTREAM-JOINTHIS"));
        let other_store = format!("{}-store", builder.generated_name("KSTREAM-JOINOTHER"));
        match (&left.key_serde, &left.value_serde, &right.value_serde) {
            (Some(key_serde), Some(left_values), Some(right_values)) => (
                Some(logged_buffer(
                    &mut builder,
                    &this_store,
                    &state,
                    (Arc::clone(key_serde), Arc::clone(left_values)),
                    |state| &mut state.left,
                )),
                Some(logged_buffer(
                    &mut builder,
                    &other_store,
                    &state,
                    (Arc::clone(key_serde), Arc::clone(right_values)),
                    |state| &mut state.right,
                )),
            ),
            _ => (None, None),
        }
    };
    let joiner = Arc::new(Mutex::new(joiner));
    let node: Node<K, VR> = Node::new();
    let has_unjoined = outer.0 || outer.1;

    let (shared, join, next) = (Arc::clone(&state), Arc::clone(&joiner), node.clone());
    left.node.add_sink(move |ctx, record| {
        let out = {
            let mut state = shared.lock();
            let state = &mut *state;
            let mut joiner = join.lock();
            state.rebuild_unjoined(windows, outer);
            state.sequence += 1;
            let t = record.timestamp;
            let buffered =
                state
                    .left
                    .put(record.key.clone(), t, state.sequence, record.value.clone());
            let dropped = state.left.sweep();
            if let Some(log) = &left_log {
                if buffered {
                    log.write(ctx, &record.key, t, state.sequence, &record.value)?;
                }
                log.expire(ctx, dropped)?;
            }
            let partners =
                |state: &JoinState<K, V1, V2>, key: &K, from, to| state.right.fetch(key, from, to);
            process(
                state,
                &mut **joiner,
                windows,
                (windows.before_ms, windows.after_ms),
                (outer.0, has_unjoined),
                Side::Left,
                record,
                partners,
                |value, partner| (Some(value), partner),
            )
        };
        for record in out {
            next.forward(ctx, record)?;
        }
        Ok(())
    });

    let next = node.clone();
    right.node.add_sink(move |ctx, record| {
        let out = {
            let mut state = state.lock();
            let state = &mut *state;
            let mut joiner = joiner.lock();
            state.rebuild_unjoined(windows, outer);
            state.sequence += 1;
            let t = record.timestamp;
            let buffered =
                state
                    .right
                    .put(record.key.clone(), t, state.sequence, record.value.clone());
            let dropped = state.right.sweep();
            if let Some(log) = &right_log {
                if buffered {
                    log.write(ctx, &record.key, t, state.sequence, &record.value)?;
                }
                log.expire(ctx, dropped)?;
            }
            let partners =
                |state: &JoinState<K, V1, V2>, key: &K, from, to| state.left.fetch(key, from, to);
            process(
                state,
                &mut **joiner,
                windows,
                (windows.after_ms, windows.before_ms),
                (outer.1, has_unjoined),
                Side::Right,
                record,
                partners,
                |value, partner| (partner, Some(value)),
            )
        };
        for record in out {
            next.forward(ctx, record)?;
        }
        Ok(())
    });
    let mut stream = KStream::on(node, &left.state, lineage);
    stream.key_serde = left.key_serde.clone();
    stream
}

/// One record's pass through its side of the join: emit the unjoined records whose window
/// has closed, join with the partners in `[t - before, t + after]` of the other side, and
/// keep or emit the record itself when it found none and its side is outer.
#[allow(
    clippy::too_many_arguments,
    reason = "one side of a two-sided processor"
)]
fn process<K: Data + Ord, V1: Data, V2: Data, VR, VT: Clone, VO: Clone>(
    state: &mut JoinState<K, V1, V2>,
    joiner: &mut JoinerFn<V1, V2, VR>,
    windows: JoinWindows,
    (before, after): (i64, i64),
    (outer, has_unjoined): (bool, bool),
    side: Side,
    record: Record<K, VT>,
    partners: impl Fn(&JoinState<K, V1, V2>, &K, i64, i64) -> Vec<(i64, VO)>,
    pair: impl Fn(VT, Option<VO>) -> (Option<V1>, Option<V2>),
) -> Vec<Record<K, VR>> {
    let t = record.timestamp;
    let mut out = Vec::new();
    state.stream_time = state.stream_time.max(t);
    if has_unjoined && t == state.stream_time {
        emit_unjoined(state, joiner, windows, after, &mut out);
    }
    let from = t.saturating_sub(before).max(0);
    let to = t.saturating_add(after).max(0);
    let found = partners(state, &record.key, from, to);
    let other_side = match side {
        Side::Left => Side::Right,
        Side::Right => Side::Left,
    };
    for (partner_time, partner) in &found {
        // The partner found a match: it no longer waits for a left/outer result.
        state
            .unjoined
            .remove(&(*partner_time, other_side, record.key.clone()));
        let (l, r) = pair(record.value.clone(), Some(partner.clone()));
        if let Some(value) = joiner(l.as_ref(), r.as_ref()) {
            out.push(Record {
                key: record.key.clone(),
                value,
                timestamp: t.max(*partner_time),
            });
        }
    }
    if outer && found.is_empty() {
        if to < state.stream_time {
            // The window is already closed for this out-of-order record: no partner can
            // come any more.
            let (l, r) = pair(record.value, None);
            if let Some(value) = joiner(l.as_ref(), r.as_ref()) {
                out.push(Record {
                    key: record.key,
                    value,
                    timestamp: t,
                });
            }
        } else {
            state.min_time = state.min_time.min(t);
            let (l, r) = pair(record.value, None);
            state
                .unjoined
                .entry((t, side, record.key))
                .or_default()
                .push((l, r));
        }
    }
    out
}

/// Emits, oldest first, the unjoined records whose join window closed: a left record at `t`
/// once `t + after + grace` is before stream time, a right one once `t + before + grace` is.
fn emit_unjoined<K: Data + Ord, V1, V2, VR>(
    state: &mut JoinState<K, V1, V2>,
    joiner: &mut JoinerFn<V1, V2, VR>,
    windows: JoinWindows,
    after: i64,
    out: &mut Vec<Record<K, VR>>,
) {
    if state
        .min_time
        .saturating_add(after)
        .saturating_add(windows.grace_ms)
        >= state.stream_time
    {
        return;
    }
    state.min_time = i64::MAX;
    let (mut left_open, mut right_open) = (false, false);
    let mut emitted = Vec::new();
    for ((timestamp, side, key), values) in &state.unjoined {
        state.min_time = *timestamp;
        if left_open && right_open {
            break;
        }
        let look_back = match side {
            Side::Left => windows.after_ms,
            Side::Right => windows.before_ms,
        };
        if timestamp
            .saturating_add(look_back)
            .saturating_add(windows.grace_ms)
            >= state.stream_time
        {
            match side {
                Side::Left => left_open = true,
                Side::Right => right_open = true,
            }
            continue;
        }
        for (left, right) in values {
            if let Some(value) = joiner(left.as_ref(), right.as_ref()) {
                out.push(Record {
                    key: key.clone(),
                    value,
                    timestamp: *timestamp,
                });
            }
        }
        emitted.push((*timestamp, *side, key.clone()));
    }
    for key in emitted {
        state.unjoined.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::JoinStore;

    /// Expired records go whatever their key: not only those of the smallest key (the
    /// buffer is ordered by key first), so a join over many keys stays bounded.
    #[test]
    fn the_sweep_drops_every_keys_expired_records() {
        let retention = 100;
        let mut store = JoinStore::new(retention);
        assert!(store.put("b", 0, 1, "b0"));
        assert!(store.put("a", 0, 2, "a0"));
        assert_eq!(store.sweep(), vec![], "nothing expired yet");
        assert!(store.put("a", 150, 3, "a150"));
        assert!(store.put("c", 60, 4, "c60"));
        let mut dropped = store.sweep();
        dropped.sort();
        assert_eq!(dropped, vec![("a", 0, 2), ("b", 0, 1)]);
        let left: Vec<_> = store.records.keys().copied().collect();
        assert_eq!(left, vec![("a", 150, 3), ("c", 60, 4)]);
        // The next sweep waits until the latest timestamp moves on by a period.
        assert!(store.put("a", 200, 5, "a200"));
        assert_eq!(store.sweep(), vec![]);
        assert_eq!(store.fetch(&"c", 0, 100), vec![], "expired: not found");
        assert!(!store.put("d", 90, 6, "d90"), "expired: not buffered");
        assert!(store.put("a", 250, 7, "a250"));
        let mut dropped = store.sweep();
        dropped.sort();
        assert_eq!(dropped, vec![("a", 150, 3), ("c", 60, 4)]);
    }
}
