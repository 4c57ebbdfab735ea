//! [`FaultFs`]: an in-memory [`FileSystem`] that remembers what was made durable, so tests can
//! tear writes, fail fsyncs and crash, losing whatever was not fsynced.
//!
//! Durability model: a file's bytes survive a crash up to its last successful `sync_data`; a
//! directory entry (creation, rename, removal) survives once its parent directory was synced.
//! [`FaultFs::crash_with`] may additionally keep any prefix of the un-synced appended bytes, as
//! a real disk might.

use crate::config::{Clock, SystemClock};
use crate::fs::{File, FileSystem};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Faults armed on a [`FaultFs`]; shared by all its files.
#[derive(Debug, Default)]
struct Faults {
    /// Bytes that writes may still store; the write that crosses it stores a prefix and fails.
    write_budget: Option<u64>,
    /// Number of upcoming `sync_data` calls that fail without making anything durable.
    failing_syncs: u32,
    /// Number of successful `sync_data` calls so far.
    syncs: u64,
    /// Paths whose whole subtree fails every name operation (a dead disk or mount).
    failed_paths: Vec<PathBuf>,
}

#[derive(Debug, Default)]
struct Content {
    data: Vec<u8>,
    synced: Vec<u8>,
    /// Last modification, in milliseconds since the epoch of the file system's clock.
    modified_ms: i64,
}

#[derive(Debug)]
struct MemFile {
    content: Mutex<Content>,
    faults: Arc<Mutex<Faults>>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default)]
struct Namespace {
    current: HashMap<PathBuf, Arc<MemFile>>,
    durable: HashMap<PathBuf, Arc<MemFile>>,
    dirs: BTreeSet<PathBuf>,
}

/// In-memory file system with fault injection and crash simulation. Cloning shares the state.
#[derive(Debug, Clone)]
pub struct FaultFs {
    names: Arc<Mutex<Namespace>>,
    faults: Arc<Mutex<Faults>>,
    /// Stamps modification times (the system clock unless a test injects one).
    clock: Arc<dyn Clock>,
}

impl Default for FaultFs {
    fn default() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected fault: {what}"))
}

impl FaultFs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty file system whose files take their modification times from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            names: Arc::default(),
            faults: Arc::default(),
            clock,
        }
    }

    /// From now on, writes may store `bytes` more bytes in total; the write that crosses the
    /// budget stores only its prefix (a torn write) and fails, as do all later writes.
    pub fn set_write_budget(&self, bytes: Option<u64>) {
        self.faults.lock().write_budget = bytes;
    }

    /// The next `count` fsyncs fail and make nothing durable.
    pub fn fail_syncs(&self, count: u32) {
        self.faults.lock().failing_syncs = count;
    }

    /// From now on, every operation on a name at or under `path` (open, create, list, rename,
    /// remove, directory fsync) fails with an I/O error, as on a failed disk.
    pub fn fail_path(&self, path: impl Into<PathBuf>) {
        self.faults.lock().failed_paths.push(path.into());
    }

    fn check_path(&self, path: &Path) -> io::Result<()> {
        if self
            .faults
            .lock()
            .failed_paths
            .iter()
            .any(|p| path.starts_with(p))
        {
            return Err(injected("I/O error on a failed path"));
        }
        Ok(())
    }

    /// Number of successful file fsyncs so far.
    pub fn sync_count(&self) -> u64 {
        self.faults.lock().syncs
    }

    /// A new file system holding what would survive a power loss now: synced bytes of files
    /// whose directory entries were synced. Faults are not carried over.
    pub fn crash(&self) -> FaultFs {
        self.crash_with(|_, synced, _| synced)
    }

    /// Like [`FaultFs::crash`], but `keep(path, synced_len, written_len)` chooses how many bytes
    /// of each file survive; the choice is clamped to `[synced_len, written_len]` and applies
    /// when the un-synced bytes only extend the synced ones.
    pub fn crash_with(&self, mut keep: impl FnMut(&Path, usize, usize) -> usize) -> FaultFs {
        let names = self.names.lock();
        let fresh = FaultFs::with_clock(self.clock.clone());
        {
            let mut new_names = fresh.names.lock();
            new_names.dirs = names.dirs.clone();
            for (path, file) in &names.durable {
                let content = file.content.lock();
                let synced = content.synced.len();
                let survived = if content.data.starts_with(&content.synced) {
                    let n =
                        keep(path, synced, content.data.len()).clamp(synced, content.data.len());
                    content.data.get(..n).unwrap_or_default().to_vec()
                } else {
                    content.synced.clone()
                };
                let file = Arc::new(MemFile {
                    content: Mutex::new(Content {
                        data: survived.clone(),
                        synced: survived,
                        modified_ms: content.modified_ms,
                    }),
                    faults: fresh.faults.clone(),
                    clock: fresh.clock.clone(),
                });
                new_names.current.insert(path.clone(), file.clone());
                new_names.durable.insert(path.clone(), file);
            }
        }
        fresh
    }

    /// The current bytes of a file, for assertions.
    pub fn read_all(&self, path: &Path) -> Option<Vec<u8>> {
        let names = self.names.lock();
        names
            .current
            .get(path)
            .map(|f| f.content.lock().data.clone())
    }

    /// Replaces the current bytes of a file (durably), for corrupting data in tests.
    pub fn write_all(&self, path: &Path, data: &[u8]) -> bool {
        let names = self.names.lock();
        match names.current.get(path) {
            Some(f) => {
                let mut content = f.content.lock();
                content.data = data.to_vec();
                content.synced = data.to_vec();
                true
            }
            None => false,
        }
    }
}

impl File for MemFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let content = self.content.lock();
        let start = usize::try_from(pos)
            .unwrap_or(usize::MAX)
            .min(content.data.len());
        let src = content.data.get(start..).unwrap_or_default();
        let n = src.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), src.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let allowed = {
            let mut faults = self.faults.lock();
            match faults.write_budget.as_mut() {
                None => buf.len(),
                Some(budget) => {
                    let n = (*budget).min(buf.len() as u64) as usize;
                    *budget -= n as u64;
                    n
                }
            }
        };
        let mut content = self.content.lock();
        let pos = usize::try_from(pos).map_err(|_| io::Error::other("position overflow"))?;
        let end = pos + allowed;
        if content.data.len() < end {
            content.data.resize(end, 0);
        }
        if let (Some(dst), Some(src)) = (content.data.get_mut(pos..end), buf.get(..allowed)) {
            dst.copy_from_slice(src);
        }
        content.modified_ms = self.clock.now_ms();
        if allowed < buf.len() {
            return Err(injected("torn write"));
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.content.lock().data.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("length overflow"))?;
        let mut content = self.content.lock();
        content.data.resize(len, 0);
        content.modified_ms = self.clock.now_ms();
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        {
            let mut faults = self.faults.lock();
            if faults.failing_syncs > 0 {
                faults.failing_syncs -= 1;
                return Err(injected("fsync failed"));
            }
            faults.syncs += 1;
        }
        let mut content = self.content.lock();
        content.synced = content.data.clone();
        Ok(())
    }
}

impl FileSystem for FaultFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check_path(path)?;
        let mut names = self.names.lock();
        for ancestor in path.ancestors() {
            names.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn File>> {
        self.check_path(path)?;
        let mut names = self.names.lock();
        if let Some(file) = names.current.get(path) {
            return Ok(file.clone());
        }
        if !create {
            return Err(not_found(path));
        }
        if !path.parent().is_some_and(|p| names.dirs.contains(p)) {
            return Err(not_found(path));
        }
        let file = Arc::new(MemFile {
            content: Mutex::new(Content {
                modified_ms: self.clock.now_ms(),
                ..Content::default()
            }),
            faults: self.faults.clone(),
            clock: self.clock.clone(),
        });
        names.current.insert(path.to_path_buf(), file.clone());
        Ok(file)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check_path(path)?;
        let mut names = self.names.lock();
        names
            .current
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.check_path(path)?;
        let mut names = self.names.lock();
        names.current.retain(|p, _| !p.starts_with(path));
        names.durable.retain(|p, _| !p.starts_with(path));
        names.dirs.retain(|p| !p.starts_with(path));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check_path(from)?;
        self.check_path(to)?;
        let mut names = self.names.lock();
        if names.dirs.contains(from) {
            return rename_dir(&mut names, from, to);
        }
        let file = names.current.remove(from).ok_or_else(|| not_found(from))?;
        names.current.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.check_path(path)?;
        let names = self.names.lock();
        if !names.dirs.contains(path) {
            return Err(not_found(path));
        }
        let files = names.current.keys().filter(|p| p.parent() == Some(path));
        let dirs = names.dirs.iter().filter(|p| p.parent() == Some(path));
        Ok(files
            .chain(dirs)
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn modified_ms(&self, path: &Path) -> io::Result<i64> {
        self.check_path(path)?;
        let names = self.names.lock();
        let file = names.current.get(path).ok_or_else(|| not_found(path))?;
        Ok(file.content.lock().modified_ms)
    }

    fn exists(&self, path: &Path) -> bool {
        let names = self.names.lock();
        names.current.contains_key(path) || names.dirs.contains(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.check_path(path)?;
        let mut names = self.names.lock();
        let names = &mut *names;
        names.durable.retain(|p, _| p.parent() != Some(path));
        for (p, f) in &names.current {
            if p.parent() == Some(path) {
                names.durable.insert(p.clone(), f.clone());
            }
        }
        Ok(())
    }
}

/// Renames a directory with everything in it. Directories are always durable here, so the
/// rename is too: it moves the durable entries along with the current ones. (A real file
/// system needs an fsync of the parent; callers do it, and these tests do not check it.)
fn rename_dir(names: &mut Namespace, from: &Path, to: &Path) -> io::Result<()> {
    if names.dirs.iter().any(|d| d.starts_with(to))
        || names.current.keys().any(|p| p.starts_with(to))
    {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists", to.display()),
        ));
    }
    let moved = |p: &Path| -> PathBuf {
        p.strip_prefix(from)
            .map_or_else(|_| p.to_path_buf(), |rest| to.join(rest))
    };
    for map in [&mut names.current, &mut names.durable] {
        let inside: Vec<PathBuf> = map
            .keys()
            .filter(|p| p.starts_with(from))
            .cloned()
            .collect();
        for path in inside {
            if let Some(file) = map.remove(&path) {
                map.insert(moved(&path), file);
            }
        }
    }
    let dirs: Vec<PathBuf> = names
        .dirs
        .iter()
        .filter(|d| d.starts_with(from))
        .cloned()
        .collect();
    for dir in dirs {
        names.dirs.remove(&dir);
        names.dirs.insert(moved(&dir));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_keeps_only_synced_bytes_and_entries() {
        let fs = FaultFs::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        let a = fs.open(&dir.join("a"), true).unwrap();
        a.write_all_at(b"hello", 0).unwrap();
        fs.sync_dir(dir).unwrap();
        a.sync_data().unwrap();
        a.write_all_at(b" world", 5).unwrap();
        let b = fs.open(&dir.join("b"), true).unwrap();
        b.write_all_at(b"x", 0).unwrap();
        b.sync_data().unwrap();

        let after = fs.crash();
        assert_eq!(after.read_all(&dir.join("a")).unwrap(), b"hello");
        assert!(!after.exists(&dir.join("b")), "entry of b was never synced");

        let partial = fs.crash_with(|_, synced, _| synced + 3);
        assert_eq!(partial.read_all(&dir.join("a")).unwrap(), b"hello wo");
    }

    #[test]
    fn torn_write_and_failed_sync() {
        let fs = FaultFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let a = fs.open(Path::new("/d/a"), true).unwrap();
        fs.set_write_budget(Some(3));
        assert!(a.write_all_at(b"hello", 0).is_err());
        assert_eq!(fs.read_all(Path::new("/d/a")).unwrap(), b"hel");
        fs.fail_syncs(1);
        assert!(a.sync_data().is_err());
        assert!(a.sync_data().is_ok());
    }
}
