//! The local copy of a task's state stores (Kafka's `state.dir/<application.id>/<task id>/`),
//! in one redb database per task.
//!
//! The changelog topics stay the system of record; the local copy is a cache of them that
//! makes a restart cheap. Per store it holds the latest changelog record per key, exactly the
//! bytes the changelog holds (in each store kind's format: a timestamped value, a plain one, a
//! join buffer's window-store key, a suppression buffer's value), so records restored from it
//! and from the changelog go through the same `Task::restore`.
//! Beside them a checkpoint table holds, per changelog topic (its partition is the task's),
//! the offset after the last record the copy holds (Kafka's `.checkpoint` file). Records and
//! checkpoints are written in one write transaction, so after a crash the database is at an
//! earlier commit whose data and checkpoints agree.
//!
//! Every function here blocks (file I/O); the runtime calls them through
//! `tokio::task::spawn_blocking` (see [`blocking`]).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableError,
};

use crate::Error;

/// The changelog offsets the local copy holds records up to (exclusive), by changelog topic.
const CHECKPOINTS: TableDefinition<'static, &str, i64> = TableDefinition::new("checkpoints");

/// The database's file name in a task's directory.
pub(crate) const DATABASE_FILE: &str = "state.redb";

/// Records written without `Durability::Immediate` after which a commit is made durable
/// (Kafka's `OFFSET_DELTA_THRESHOLD_FOR_CHECKPOINT`): non-durable commits survive the process
/// closing the database, not a kill or a power loss, which roll the database back to its last
/// durable commit; the threshold bounds what such a restart reads again from the changelogs.
const DURABLE_EVERY: u64 = 10_000;

/// The directory of the global tables' local copy under the application's directory, beside
/// the task directories (Kafka's `state.dir/<application.id>/global`). It is a task
/// directory in all but its name: one database of the same format, whose stores are the
/// global topics and whose checkpoints are per topic partition (`<topic>-<partition>`). Not
/// a number, so the state cleaner never takes it for a task's.
pub(crate) const GLOBAL_DIR: &str = "global";

/// The page cache of each task's database (redb's default is 1 GiB): what a persistent
/// store reads often stays in its own, typed, cache; this one serves the rest.
const DATABASE_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Opens (or creates) the database at `path` with [`DATABASE_CACHE_BYTES`] of cache.
fn create_database(path: &Path) -> Result<Database, redb::DatabaseError> {
    Database::builder()
        .set_cache_size(DATABASE_CACHE_BYTES)
        .create(path)
}

/// The lock file of a task's directory, and of an application's directory.
const LOCK_FILE: &str = ".lock";

/// One changelog record to keep: store, serialized key, changelog value (`None`: a tombstone,
/// which removes the key).
pub(crate) type LocalRecord = (String, Bytes, Option<Bytes>);

/// The records loaded from the local state for one store: serialized key, changelog value.
pub(crate) type LoadedStore = (String, Vec<StoredRecord>);

/// One record of a store's local copy: its key and value, as the changelog holds them.
pub(crate) type StoredRecord = (Vec<u8>, Vec<u8>);

/// What [`TaskState::load_checked`] found in a local copy.
pub(crate) enum LocalCopy {
    /// Its records per store and its checkpoints.
    Loaded {
        records: Vec<LoadedStore>,
        checkpoints: HashMap<String, i64>,
    },
    /// The checkpoint `name` at `offset` was out of range: the copy is empty now.
    Wiped { name: String, offset: i64 },
}

/// The open database of one task, with its directory locked.
pub(crate) struct TaskState {
    dir: PathBuf,
    path: PathBuf,
    /// Per store, an open table of the last read transaction, reused by the reads until the
    /// next write: a persistent store reads one key per lookup, and a transaction per read
    /// would cost more than the read. Declared before `db`, so dropped before it.
    readers: parking_lot::Mutex<HashMap<String, StoreReader>>,
    db: Database,
    /// Records written since the last durable commit.
    not_durable: AtomicU64,
    /// Holds the directory's advisory lock until the state is dropped: the OS releases it
    /// when the file closes, also when the process dies, so a crash leaves no stale lock.
    _lock: File,
}

impl std::fmt::Debug for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskState")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn io_error(path: &Path, error: std::io::Error) -> Error {
    Error::State {
        path: path.to_path_buf(),
        source: Box::new(error),
    }
}

fn db_error(path: &Path, error: impl Into<redb::Error>) -> Error {
    Error::State {
        path: path.to_path_buf(),
        source: Box::new(error.into()),
    }
}

/// The redb table of `store`, named apart from the checkpoint table.
fn store_table(table_name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(table_name)
}

fn table_name(store: &str) -> String {
    format!("store:{store}")
}

/// Takes the exclusive advisory lock of `dir` (creating it and its lock file); `None` when
/// another instance holds it. An advisory lock (`File::try_lock`: `flock` on Unix) rather
/// than a file created exclusively, because the OS drops it with its holder: a crashed
/// process leaves nothing to clean up.
pub(crate) fn try_lock(dir: &Path) -> Result<Option<File>, Error> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(error)) => Err(io_error(&path, error)),
    }
}

impl TaskState {
    /// Opens the database in the locked directory `dir`, creating it if missing. A file that
    /// does not open as a database (corrupt) is logged and wiped: the task then restores its
    /// whole changelog, as Kafka does with corrupted state. Returns whether it wiped.
    pub(crate) fn open(dir: PathBuf, lock: File) -> Result<(Self, bool), Error> {
        let path = dir.join(DATABASE_FILE);
        match create_database(&path) {
            Ok(db) => Ok((Self::with(dir, path, db, lock), false)),
            Err(error) if !is_corrupt(&error) => Err(db_error(&path, error)),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error,
                    "local state does not open; wiping it and restoring from the changelogs");
                wipe_dir(&dir)?;
                let db = create_database(&path).map_err(|e| db_error(&path, e))?;
                Ok((Self::with(dir, path, db, lock), true))
            }
        }
    }

    fn with(dir: PathBuf, path: PathBuf, db: Database, lock: File) -> Self {
        Self {
            dir,
            path,
            readers: parking_lot::Mutex::default(),
            db,
            not_durable: AtomicU64::new(0),
            _lock: lock,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes everything the directory holds but its lock, and starts an empty database.
    pub(crate) fn wipe(self) -> Result<Self, Error> {
        let Self {
            dir,
            path,
            db,
            readers,
            _lock,
            ..
        } = self;
        drop(readers);
        drop(db);
        wipe_dir(&dir)?;
        let db = create_database(&path).map_err(|e| db_error(&path, e))?;
        Ok(Self::with(dir, path, db, _lock))
    }

    /// The checkpoints: per changelog topic, the offset after the last record held.
    pub(crate) fn checkpoints(&self) -> Result<HashMap<String, i64>, Error> {
        read_checkpoints(&self.db, &self.path)
    }

    /// Reads the checkpoints and, unless one of them is `out_of_range` (given its name and
    /// offset), the records held for `stores`. A checkpoint out of range (Kafka's
    /// `OffsetOutOfRange` on restore: the topic was deleted, recreated or truncated) wipes
    /// the copy instead, which leaves nothing to load. One blocking call for what a task's
    /// and the global tables' restores both start with.
    pub(crate) fn load_checked(
        self,
        stores: &[String],
        out_of_range: impl Fn(&str, i64) -> bool,
    ) -> Result<(Self, LocalCopy), Error> {
        let checkpoints = self.checkpoints()?;
        if let Some((name, offset)) = checkpoints
            .iter()
            .find(|(name, offset)| out_of_range(name, **offset))
        {
            let wiped = LocalCopy::Wiped {
                name: name.clone(),
                offset: *offset,
            };
            return Ok((self.wipe()?, wiped));
        }
        let records = self.load(stores)?;
        Ok((
            self,
            LocalCopy::Loaded {
                records,
                checkpoints,
            },
        ))
    }

    /// The changelog value held for `key` in `store`.
    pub(crate) fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.reading(store, |table| {
            let found = table.get(key)?;
            Ok(found.map(|value| value.value().to_vec()))
        })
        .map(Option::flatten)
    }

    /// The records of `store` with keys in `[low, high]` (compared as bytes), in key order.
    pub(crate) fn range(
        &self,
        store: &str,
        low: &[u8],
        high: &[u8],
    ) -> Result<Vec<StoredRecord>, Error> {
        if low > high {
            return Ok(Vec::new());
        }
        self.reading(store, |table| {
            let mut found = Vec::new();
            for entry in table.range(low..=high)? {
                let (key, value) = entry?;
                found.push((key.value().to_vec(), value.value().to_vec()));
            }
            Ok(found)
        })
        .map(Option::unwrap_or_default)
    }

    /// Calls `visit` with every key of `store`, in key order.
    pub(crate) fn visit_keys(&self, store: &str, visit: impl FnMut(&[u8])) -> Result<(), Error> {
        self.visit_keys_after(store, None, usize::MAX, visit)
            .map(drop)
    }

    /// Calls `visit` with at most `limit` keys of `store` after `after` (from the first key
    /// without it), in key order; returns the last key visited when it stopped at `limit`,
    /// to go on from, or `None` when it reached the end.
    pub(crate) fn visit_keys_after(
        &self,
        store: &str,
        after: Option<&[u8]>,
        limit: usize,
        mut visit: impl FnMut(&[u8]),
    ) -> Result<Option<Vec<u8>>, Error> {
        self.reading(store, |table| {
            let range = match after {
                Some(after) => {
                    let bounds: (Bound<&[u8]>, Bound<&[u8]>) =
                        (Bound::Excluded(after), Bound::Unbounded);
                    table.range(bounds)?
                }
                None => table.iter()?,
            };
            let mut visited = 0;
            for entry in range {
                let (key, _) = entry?;
                visit(key.value());
                visited += 1;
                if visited == limit {
                    return Ok(Some(key.value().to_vec()));
                }
            }
            Ok(None)
        })
        .map(Option::flatten)
    }

    /// What `read` gets from the table of `store` as the reused read transaction sees it;
    /// `None` when there is no such table (nothing was written to the store yet).
    fn reading<T>(
        &self,
        store: &str,
        read: impl FnOnce(
            &redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
        ) -> Result<T, redb::StorageError>,
    ) -> Result<Option<T>, Error> {
        let mut readers = self.readers.lock();
        let reader = match readers.get(store) {
            Some(reader) => reader,
            None => {
                let txn = self.db.begin_read().map_err(|e| db_error(&self.path, e))?;
                let name = table_name(store);
                let table = match txn.open_table(store_table(&name)) {
                    Ok(table) => Some(table),
                    Err(TableError::TableDoesNotExist(_)) => None,
                    Err(error) => return Err(db_error(&self.path, error)),
                };
                readers
                    .entry(store.to_string())
                    .or_insert(StoreReader(table))
            }
        };
        let Some(table) = &reader.0 else {
            return Ok(None);
        };
        read(table).map(Some).map_err(|e| db_error(&self.path, e))
    }

    /// How many keys `store` holds.
    pub(crate) fn count(&self, store: &str) -> Result<u64, Error> {
        let txn = self.db.begin_read().map_err(|e| db_error(&self.path, e))?;
        let name = table_name(store);
        match txn.open_table(store_table(&name)) {
            Ok(table) => table.len().map_err(|e| db_error(&self.path, e)),
            Err(TableError::TableDoesNotExist(_)) => Ok(0),
            Err(error) => Err(db_error(&self.path, error)),
        }
    }

    /// Every record held for `stores`, in key order per store.
    pub(crate) fn load(&self, stores: &[String]) -> Result<Vec<LoadedStore>, Error> {
        let txn = self.db.begin_read().map_err(|e| db_error(&self.path, e))?;
        let mut records = Vec::new();
        for store in stores {
            let name = table_name(store);
            let table = match txn.open_table(store_table(&name)) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => continue,
                Err(error) => return Err(db_error(&self.path, error)),
            };
            let mut loaded = Vec::new();
            for entry in table.iter().map_err(|e| db_error(&self.path, e))? {
                let (key, value) = entry.map_err(|e| db_error(&self.path, e))?;
                loaded.push((key.value().to_vec(), value.value().to_vec()));
            }
            records.push((store.clone(), loaded));
        }
        Ok(records)
    }

    /// Writes `records` and `checkpoints` as [`TaskState::write`] does, durably once
    /// [`DURABLE_EVERY`] records were written since the last durable commit.
    pub(crate) fn commit(
        &self,
        records: &[LocalRecord],
        checkpoints: &HashMap<String, i64>,
    ) -> Result<(), Error> {
        let written = self
            .not_durable
            .fetch_add(records.len() as u64, Ordering::Relaxed)
            + records.len() as u64;
        let durability = if written >= DURABLE_EVERY {
            Durability::Immediate
        } else {
            Durability::None
        };
        self.write(records, checkpoints, durability)
    }

    /// Writes `records` (in changelog order: a later record of a key replaces an earlier one,
    /// a tombstone removes it) and the new `checkpoints` in one write transaction.
    pub(crate) fn write(
        &self,
        records: &[LocalRecord],
        checkpoints: &HashMap<String, i64>,
        durability: Durability,
    ) -> Result<(), Error> {
        let mut txn = self.db.begin_write().map_err(|e| db_error(&self.path, e))?;
        txn.set_durability(durability)
            .map_err(|e| db_error(&self.path, e))?;
        {
            // Each store's table opened once, at its first record.
            let mut tables = HashMap::new();
            for (store, key, value) in records {
                let table = match tables.entry(store.as_str()) {
                    Entry::Occupied(entry) => entry.into_mut(),
                    Entry::Vacant(entry) => entry.insert(
                        txn.open_table(store_table(&table_name(store)))
                            .map_err(|e| db_error(&self.path, e))?,
                    ),
                };
                match value {
                    Some(value) => table.insert(key.as_ref(), value.as_ref()).map(drop),
                    None => table.remove(key.as_ref()).map(drop),
                }
                .map_err(|e| db_error(&self.path, e))?;
            }
            let mut table = txn
                .open_table(CHECKPOINTS)
                .map_err(|e| db_error(&self.path, e))?;
            for (topic, offset) in checkpoints {
                table
                    .insert(topic.as_str(), *offset)
                    .map_err(|e| db_error(&self.path, e))?;
            }
        }
        txn.commit().map_err(|e| db_error(&self.path, e))?;
        // The next read sees this write.
        self.readers.lock().clear();
        if matches!(durability, Durability::Immediate) {
            self.not_durable.store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Makes every commit so far durable (an empty commit with `Durability::Immediate`): a
    /// clean close leaves the latest state on disk, whatever the OS does next.
    pub(crate) fn persist(&self) -> Result<(), Error> {
        self.write(&[], &HashMap::new(), Durability::Immediate)
    }
}

/// A store's table as one read transaction saw it (`None`: it had no such table).
struct StoreReader(Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>);

/// Whether a database that does not open is corrupt, so wiping it and restoring from the
/// changelogs is the way on. Not so a database another process has open or an I/O error
/// (permissions, a full disk): those must be fixed, not papered over by a full restore.
fn is_corrupt(error: &redb::DatabaseError) -> bool {
    use redb::{DatabaseError, StorageError};
    match error {
        DatabaseError::RepairAborted | DatabaseError::UpgradeRequired(_) => true,
        DatabaseError::Storage(StorageError::Corrupted(_)) => true,
        // A file shorter than its header.
        DatabaseError::Storage(StorageError::Io(error)) => matches!(
            error.kind(),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
        ),
        _ => false,
    }
}

/// Deletes the task directory `dir` while holding its lock, as Kafka's state directory does;
/// false (nothing deleted) when someone else holds it.
pub(crate) fn delete_task_dir(dir: &Path) -> Result<bool, Error> {
    let Some(lock) = try_lock(dir)? else {
        return Ok(false);
    };
    wipe_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
    std::fs::remove_dir(dir).map_err(|e| io_error(dir, e))?;
    drop(lock);
    Ok(true)
}

/// The task directories under the application's directory `app_dir` (named by their task,
/// the partition number). The global directory, [`GLOBAL_DIR`], is not one: the cleaner
/// must leave it to the instance, which needs it whatever tasks it runs.
fn task_dirs(app_dir: &Path) -> Result<Vec<(i32, PathBuf)>, Error> {
    let entries = match std::fs::read_dir(app_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error(app_dir, error)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(app_dir, e))?;
        let path = entry.path();
        let is_dir = entry.file_type().map_err(|e| io_error(&path, e))?.is_dir();
        let task = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok());
        if let (true, Some(task)) = (is_dir, task) {
            dirs.push((task, path));
        }
    }
    Ok(dirs)
}

fn read_checkpoints(
    db: &impl ReadableDatabase,
    path: &Path,
) -> Result<HashMap<String, i64>, Error> {
    let txn = db.begin_read().map_err(|e| db_error(path, e))?;
    let table = match txn.open_table(CHECKPOINTS) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
        Err(error) => return Err(db_error(path, error)),
    };
    let mut checkpoints = HashMap::new();
    for entry in table.iter().map_err(|e| db_error(path, e))? {
        let (topic, offset) = entry.map_err(|e| db_error(path, e))?;
        checkpoints.insert(topic.value().to_string(), offset.value());
    }
    Ok(checkpoints)
}

/// The checkpoints of each of `tasks` whose directory under `app_dir` holds a database,
/// each read under the directory's lock. Nothing is written, created or wiped (the database
/// is opened read-only, and a directory without its lock file is not locked), so that the
/// state cleaner's view of when a directory last changed stays as it was: a directory that
/// is locked, has no lock file or database, or whose database does not read is left out
/// (its lag is then unknown to the assignor), and the task's own open deals with it.
pub(crate) fn local_checkpoints(
    app_dir: &Path,
    tasks: &BTreeSet<i32>,
) -> BTreeMap<i32, HashMap<String, i64>> {
    let mut out = BTreeMap::new();
    for task in tasks {
        let dir = app_dir.join(task.to_string());
        let path = dir.join(DATABASE_FILE);
        if !path.exists() || !dir.join(LOCK_FILE).exists() {
            continue;
        }
        let read = try_lock(&dir).and_then(|lock| {
            let Some(_lock) = lock else {
                return Ok(None);
            };
            let db = redb::ReadOnlyDatabase::open(&path).map_err(|e| db_error(&path, e))?;
            read_checkpoints(&db, &path).map(Some)
        });
        match read {
            Ok(Some(checkpoints)) => {
                out.insert(*task, checkpoints);
            }
            Ok(None) => {}
            Err(error) => tracing::debug!(task, %error, "checkpoints of local state not read"),
        }
    }
    out
}

/// The tasks with a directory under `app_dir` (none when it does not exist).
pub(crate) fn local_tasks(app_dir: &Path) -> Result<BTreeSet<i32>, Error> {
    Ok(task_dirs(app_dir)?
        .into_iter()
        .map(|(task, _)| task)
        .collect())
}

/// When the task directory `dir` last changed: the latest modification time of the
/// directory and its files (a task writes its database at every commit and at close).
fn last_modified(dir: &Path) -> Result<SystemTime, Error> {
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|metadata| metadata.modified())
            .map_err(|e| io_error(path, e))
    };
    let mut latest = modified(dir)?;
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        latest = latest.max(modified(&entry.path())?);
    }
    Ok(latest)
}

/// Kafka's state cleaner: deletes the task directories under `app_dir` of tasks other than
/// `owned` that have not changed for `delay` (`state.cleanup.delay.ms`), each under its
/// lock; a locked one is skipped. Returns the tasks deleted.
pub(crate) fn clean_removed_tasks(
    app_dir: &Path,
    owned: &BTreeSet<i32>,
    delay: Duration,
) -> Result<Vec<i32>, Error> {
    let now = SystemTime::now();
    let mut deleted = Vec::new();
    for (task, dir) in task_dirs(app_dir)? {
        if owned.contains(&task) {
            continue;
        }
        let idle = now
            .duration_since(last_modified(&dir)?)
            .unwrap_or(Duration::ZERO);
        if idle > delay && delete_task_dir(&dir)? {
            deleted.push(task);
        }
    }
    Ok(deleted)
}

/// Deletes every task directory under `app_dir`, and the global one (Kafka's
/// `KafkaStreams#cleanUp`); a directory someone holds is refused with
/// [`Error::StateLocked`].
pub(crate) fn wipe_app_dir(app_dir: &Path) -> Result<(), Error> {
    let mut dirs: Vec<PathBuf> = task_dirs(app_dir)?
        .into_iter()
        .map(|(_, dir)| dir)
        .collect();
    let global = app_dir.join(GLOBAL_DIR);
    if global.is_dir() {
        dirs.push(global);
    }
    for dir in dirs {
        if !delete_task_dir(&dir)? {
            return Err(Error::StateLocked { path: dir });
        }
    }
    Ok(())
}

/// Removes every entry of `dir` but the lock file (held by this instance).
fn wipe_dir(dir: &Path) -> Result<(), Error> {
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        if entry.file_name() == LOCK_FILE {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().map_err(|e| io_error(&path, e))?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| io_error(&path, e))?;
    }
    Ok(())
}

/// Runs blocking file work (redb, locks) on tokio's blocking pool: the runtime's futures run
/// on any runtime, `current_thread` ones included, where `block_in_place` panics, and a
/// commit's write must not stall the other tasks of the executor. `path` names the work in
/// the error if it panicked.
pub(crate) async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| Error::State {
            path: path.to_path_buf(),
            source: Box::new(error),
        })?
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;

    /// The global directory is the instance's whatever tasks it runs: the state cleaner
    /// leaves it however long it was idle, while it deletes an idle task's directory;
    /// cleanup deletes both.
    #[test]
    fn the_cleaner_keeps_the_global_directory_and_cleanup_deletes_it() {
        let dir = tempfile::tempdir().unwrap();
        let app_dir = dir.path().join("app");
        for name in ["0", GLOBAL_DIR] {
            let task_dir = app_dir.join(name);
            let lock = try_lock(&task_dir).unwrap().unwrap();
            let (state, _) = TaskState::open(task_dir, lock).unwrap();
            state.persist().unwrap();
        }
        // Both idle for longer than the delay.
        std::thread::sleep(Duration::from_millis(20));
        let deleted = clean_removed_tasks(&app_dir, &BTreeSet::new(), Duration::ZERO).unwrap();
        assert_eq!(deleted, [0]);
        assert!(app_dir.join(GLOBAL_DIR).join(DATABASE_FILE).exists());

        wipe_app_dir(&app_dir).unwrap();
        assert!(!app_dir.join(GLOBAL_DIR).exists());
    }

    /// A global directory held open (by a running instance) is refused, not deleted under
    /// it.
    #[test]
    fn cleanup_refuses_a_held_global_directory() {
        let dir = tempfile::tempdir().unwrap();
        let app_dir = dir.path().join("app");
        let global = app_dir.join(GLOBAL_DIR);
        let _held = try_lock(&global).unwrap().unwrap();
        let error = wipe_app_dir(&app_dir).unwrap_err();
        assert!(
            matches!(&error, Error::StateLocked { path } if *path == global),
            "{error}"
        );
    }
}
