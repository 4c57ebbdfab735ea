//! Candidates for weir-streams' persistent state stores, measured on the work a Kafka Streams
//! store does, in one run: an in-memory `BTreeMap` (the baseline, what weir-streams' in-memory
//! stores are), redb and fjall. The decision and these figures are in
//! `docs/decisions/state-stores.md`.
//!
//! Cases, each on a fresh store in `WEIR_BENCH_DIR` (default: the system temp directory):
//! - `aggregate`: a count per key, as an aggregation's store sees it with record caching off —
//!   a get and a put per record over 100,000 keys, with a commit every 1,000 records. A store
//!   backed by a changelog topic needs no fsync at a commit (the changelog is what survives;
//!   Kafka Streams runs RocksDB without its write-ahead log for that reason), so commits only
//!   hand the writes to the OS.
//! - `restore`: a task restoring its store from the changelog — 1,000,000 puts in batches of
//!   1,000 (one batch per fetched chunk), then the store made durable once.
//! - `window fetch`: a window store's query — keys are `key ++ window start (big endian)`, and
//!   each fetch reads one key's windows in a time range (an ordered range scan of 10 entries).
//! - `reopen`: opening the restored store again (what a restarted task pays before it can
//!   skip restoration).
//!
//! Prints `case backend: N ops/s (ratio to in-memory), disk MiB` lines, then runs the criterion
//! benchmark of one aggregate update per backend. `cargo bench -p weir-benches --bench
//! state_stores -- --test` runs every case on a few thousand records.

#![expect(clippy::unwrap_used, reason = "a benchmark fails loudly")]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::Criterion;
use redb::{ReadableTable, TableDefinition};

const TABLE: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("store");
const KEYS: u64 = 100_000;
const COMMIT_EVERY: usize = 1_000;

/// Sizes of one run: the full one, or `--test`'s.
struct Sizes {
    updates: usize,
    restored: usize,
    fetches: usize,
}

/// The operations each case needs from a store.
trait Store {
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>>;
    fn put(&mut self, key: &[u8], value: &[u8]);
    /// Ends a commit interval: the writes so far reach the OS (no fsync).
    fn commit(&mut self);
    /// Makes everything durable (fsync).
    fn persist(&mut self);
    /// Values of the keys in `[from, to]`, in key order.
    fn range(&mut self, from: &[u8], to: &[u8]) -> usize;
}

struct InMemory(BTreeMap<Vec<u8>, Vec<u8>>);

impl Store for InMemory {
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key).cloned()
    }
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.0.insert(key.to_vec(), value.to_vec());
    }
    fn commit(&mut self) {}
    fn persist(&mut self) {}
    fn range(&mut self, from: &[u8], to: &[u8]) -> usize {
        self.0.range(from.to_vec()..=to.to_vec()).count()
    }
}

/// redb: a B-tree in one file. A commit interval is one write transaction (reads go through
/// it, so they see its writes), committed without fsync (`Durability::None`); persisting
/// commits one with `Immediate`.
struct Redb {
    db: redb::Database,
    txn: Option<redb::WriteTransaction>,
}

impl Redb {
    fn open(dir: &Path) -> Self {
        let db = redb::Database::create(dir.join("store.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TABLE).unwrap();
        txn.commit().unwrap();
        Self { db, txn: None }
    }

    fn txn(&mut self) -> &redb::WriteTransaction {
        self.txn
            .get_or_insert_with(|| self.db.begin_write().unwrap())
    }

    fn finish(&mut self, durability: redb::Durability) {
        let mut txn = self
            .txn
            .take()
            .unwrap_or_else(|| self.db.begin_write().unwrap());
        txn.set_durability(durability).unwrap();
        txn.commit().unwrap();
    }
}

impl Store for Redb {
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let table = self.txn().open_table(TABLE).unwrap();
        table.get(key).unwrap().map(|v| v.value().to_vec())
    }
    fn put(&mut self, key: &[u8], value: &[u8]) {
        let mut table = self.txn().open_table(TABLE).unwrap();
        table.insert(key, value).unwrap();
    }
    fn commit(&mut self) {
        self.finish(redb::Durability::None);
    }
    fn persist(&mut self) {
        self.finish(redb::Durability::Immediate);
    }
    fn range(&mut self, from: &[u8], to: &[u8]) -> usize {
        let table = self.txn().open_table(TABLE).unwrap();
        table.range(from..=to).unwrap().count()
    }
}

/// fjall: an LSM tree with a journal; writes are buffered, a commit writes the journal to the
/// OS (`PersistMode::Buffer`), persisting fsyncs it (`SyncAll`).
struct Fjall {
    db: fjall::Database,
    keyspace: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path) -> Self {
        let db = fjall::Database::builder(dir.join("store.fjall"))
            .open()
            .unwrap();
        let keyspace = db
            .keyspace("store", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        Self { db, keyspace }
    }
}

impl Store for Fjall {
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.keyspace.get(key).unwrap().map(|v| v.to_vec())
    }
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.keyspace.insert(key, value).unwrap();
    }
    fn commit(&mut self) {
        self.db.persist(fjall::PersistMode::Buffer).unwrap();
    }
    fn persist(&mut self) {
        self.db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    fn range(&mut self, from: &[u8], to: &[u8]) -> usize {
        self.keyspace.range(from..=to).count()
    }
}

/// The key of the `i`-th record: keys are visited in a scattered, repeatable order.
fn key(i: u64) -> [u8; 8] {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % KEYS).to_be_bytes()
}

fn aggregate(store: &mut dyn Store, updates: usize) {
    for i in 0..updates {
        let key = key(i as u64);
        let count = store
            .get(&key)
            .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()));
        store.put(&key, &(count + 1).to_be_bytes());
        if (i + 1) % COMMIT_EVERY == 0 {
            store.commit();
        }
    }
    store.commit();
}

fn restore(store: &mut dyn Store, records: usize) {
    let value = [7u8; 100];
    for i in 0..records {
        store.put(&(i as u64).to_be_bytes(), &value);
        if (i + 1) % COMMIT_EVERY == 0 {
            store.commit();
        }
    }
    store.persist();
}

fn window_key(key: u32, start: u64) -> Vec<u8> {
    let mut k = key.to_be_bytes().to_vec();
    k.extend_from_slice(&start.to_be_bytes());
    k
}

/// Window-store keys: 1,000 keys × 100 windows of 10 s (not timed).
fn fill_windows(store: &mut dyn Store) {
    for key in 0..1_000u32 {
        for window in 0..100u64 {
            store.put(&window_key(key, window * 10_000), &1u64.to_be_bytes());
        }
        store.commit();
    }
}

/// Each fetch reads one key's 10 windows in a 100 s range.
fn window_fetch(store: &mut dyn Store, fetches: usize) {
    let mut found = 0;
    for i in 0..fetches {
        let key = (i as u32).wrapping_mul(2_654_435_761) % 1_000;
        let from = (i as u64 % 90) * 10_000;
        found += store.range(&window_key(key, from), &window_key(key, from + 90_000));
    }
    assert_eq!(found, fetches * 10);
}

fn disk_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return std::fs::metadata(path).map_or(0, |m| m.len());
    };
    entries
        .filter_map(Result::ok)
        .map(|e| disk_bytes(&e.path()))
        .sum()
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("WEIR_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

type Open = fn(&Path) -> Box<dyn Store>;

const BACKENDS: [(&str, Open); 3] = [
    ("in-memory", |_| Box::new(InMemory(BTreeMap::new()))),
    ("redb", |dir| Box::new(Redb::open(dir))),
    ("fjall", |dir| Box::new(Fjall::open(dir))),
];

fn report(case: &str, ops: usize, sizes: &[(&str, Duration, u64)]) {
    let baseline = sizes[0].1.as_secs_f64();
    for (backend, took, disk) in sizes {
        println!(
            "{case} {backend}: {:.0} ops/s ({:.2}× in-memory's time), disk {:.1} MiB",
            ops as f64 / took.as_secs_f64(),
            took.as_secs_f64() / baseline,
            *disk as f64 / (1024.0 * 1024.0),
        );
    }
}

/// Runs `work` on a fresh store of each backend, after the untimed `setup`.
fn run_case(case: &str, ops: usize, setup: fn(&mut dyn Store), work: impl Fn(&mut dyn Store)) {
    let mut results = Vec::new();
    for (backend, open) in BACKENDS {
        let dir = bench_dir();
        let mut store = open(dir.path());
        setup(store.as_mut());
        let start = Instant::now();
        work(store.as_mut());
        let took = start.elapsed();
        drop(store);
        results.push((backend, took, disk_bytes(dir.path())));
    }
    report(case, ops, &results);
}

fn reopen(records: usize) {
    let mut results = Vec::new();
    for (backend, open) in BACKENDS {
        let dir = bench_dir();
        let mut store = open(dir.path());
        restore(store.as_mut(), records);
        drop(store);
        let start = Instant::now();
        let mut store = open(dir.path());
        // The first read proves the store is usable (the in-memory store has nothing to
        // reopen: it would restore from the changelog instead).
        let _ = store.get(&0u64.to_be_bytes());
        results.push((backend, start.elapsed(), disk_bytes(dir.path())));
    }
    for (backend, took, _) in results {
        println!("reopen {backend} after {records} records: {took:?}");
    }
}

fn main() {
    let test = std::env::args().any(|a| a == "--test");
    let sizes = if test {
        Sizes {
            updates: 5_000,
            restored: 5_000,
            fetches: 1_000,
        }
    } else {
        Sizes {
            updates: 1_000_000,
            restored: 1_000_000,
            fetches: 100_000,
        }
    };
    run_case(
        "aggregate",
        sizes.updates,
        |_| {},
        |s| aggregate(s, sizes.updates),
    );
    run_case(
        "restore",
        sizes.restored,
        |_| {},
        |s| restore(s, sizes.restored),
    );
    run_case("window fetch", sizes.fetches, fill_windows, |s| {
        window_fetch(s, sizes.fetches);
    });
    reopen(sizes.restored);

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("state_store_update");
    for (backend, open) in BACKENDS {
        let dir = bench_dir();
        let mut store = open(dir.path());
        let mut i = 0u64;
        group.bench_function(backend, |b| {
            b.iter(|| {
                let key = key(i);
                let count = store
                    .get(&key)
                    .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()));
                store.put(&key, &(count + 1).to_be_bytes());
                i += 1;
                if i % COMMIT_EVERY as u64 == 0 {
                    store.commit();
                }
            });
        });
    }
    group.finish();
    criterion.final_summary();
}
