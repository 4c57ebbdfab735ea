//! Bounded open file handles: an active segment keeps its `.log` open; inactive segments open
//! theirs on demand and share a [`HandleCache`] that closes the least recently used when full,
//! so a node with many partitions and segments keeps a predictable number of files open.

use crate::fs::{File, FileSystem};
use crate::{Error, Result};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

/// A segment's open file, if any, and its place in the cache's use order.
#[derive(Default)]
struct SlotState {
    file: Option<Arc<dyn File>>,
    /// Key in [`Queue::by_use`] while the cache tracks this slot.
    tick: Option<u64>,
}

type Slot = Mutex<SlotState>;

/// Open handles of inactive segments, the least recently used closed beyond a capacity.
/// Cloning shares the cache; a [`crate::LogManager`] shares one among all its logs.
///
/// Locking: the cache's lock is taken before a slot's, never the other way round.
#[derive(Clone)]
pub struct HandleCache {
    inner: Arc<Mutex<Queue>>,
}

struct Queue {
    capacity: usize,
    /// Bumped on every use; orders `by_use`.
    tick: u64,
    /// Open slots by last use, oldest first.
    by_use: BTreeMap<u64, Weak<Slot>>,
}

impl fmt::Debug for HandleCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queue = self.inner.lock();
        f.debug_struct("HandleCache")
            .field("capacity", &queue.capacity)
            .field("open", &queue.by_use.len())
            .finish()
    }
}

impl HandleCache {
    /// A cache keeping at most `capacity` inactive segment files open (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Queue {
                capacity: capacity.max(1),
                tick: 0,
                by_use: BTreeMap::new(),
            })),
        }
    }

    /// The most inactive segment files kept open.
    pub fn capacity(&self) -> usize {
        self.inner.lock().capacity
    }

    /// Number of inactive segment files currently open through this cache.
    pub fn open_count(&self) -> usize {
        self.inner
            .lock()
            .by_use
            .values()
            .filter(|w| w.upgrade().is_some_and(|s| s.lock().file.is_some()))
            .count()
    }

    /// Marks `slot` as just used (tracking it if it is new) and closes the least recently
    /// used files beyond the capacity.
    fn touch(&self, slot: &Arc<Slot>) {
        let mut queue = self.inner.lock();
        queue.tick += 1;
        let tick = queue.tick;
        {
            let mut state = slot.lock();
            if let Some(old) = state.tick.take() {
                queue.by_use.remove(&old);
            }
            if state.file.is_none() {
                return; // closed meanwhile: nothing to track
            }
            state.tick = Some(tick);
        }
        queue.by_use.insert(tick, Arc::downgrade(slot));
        while queue.by_use.len() > queue.capacity {
            let Some((_, oldest)) = queue.by_use.pop_first() else {
                break;
            };
            if let Some(slot) = oldest.upgrade() {
                let mut state = slot.lock();
                state.tick = None;
                state.file = None;
            }
        }
    }

    /// Stops tracking `slot` (its segment is gone or active again).
    fn forget(&self, slot: &Arc<Slot>) {
        let mut queue = self.inner.lock();
        if let Some(tick) = slot.lock().tick.take() {
            queue.by_use.remove(&tick);
        }
    }
}

impl Default for HandleCache {
    fn default() -> Self {
        Self::new(64)
    }
}

/// The `.log` file of a segment: pinned open while active, else opened lazily through a cache.
pub(crate) struct SegmentFile {
    path: PathBuf,
    fs: Arc<dyn FileSystem>,
    cache: Option<HandleCache>,
    slot: Arc<Slot>,
}

impl fmt::Debug for SegmentFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentFile")
            .field("path", &self.path)
            .field("pinned", &self.cache.is_none())
            .finish()
    }
}

impl Drop for SegmentFile {
    fn drop(&mut self) {
        if let Some(cache) = &self.cache {
            cache.forget(&self.slot);
        }
    }
}

impl SegmentFile {
    /// A pinned handle to an open file.
    pub(crate) fn pinned(fs: &Arc<dyn FileSystem>, path: PathBuf, file: Arc<dyn File>) -> Self {
        Self {
            path,
            fs: fs.clone(),
            cache: None,
            slot: Arc::new(Mutex::new(SlotState {
                file: Some(file),
                tick: None,
            })),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, reopening it if the cache closed it.
    pub(crate) fn get(&self) -> Result<Arc<dyn File>> {
        let open = self.slot.lock().file.clone();
        let file = match open {
            Some(file) => file,
            None => {
                let file = self
                    .fs
                    .open(&self.path, false)
                    .map_err(Error::io("open segment", &self.path))?;
                self.slot.lock().file = Some(file.clone());
                file
            }
        };
        if let Some(cache) = &self.cache {
            cache.touch(&self.slot);
        }
        Ok(file)
    }

    /// The segment became inactive: its handle now lives in `cache` (or is closed at once
    /// when `keep_open` is false) and is reopened on demand.
    pub(crate) fn unpin(&mut self, cache: &HandleCache, keep_open: bool) {
        if keep_open {
            cache.touch(&self.slot);
        } else {
            self.slot.lock().file = None;
        }
        self.cache = Some(cache.clone());
    }

    /// The segment became active again (after a truncation): keep its file open.
    pub(crate) fn pin(&mut self) -> Result<()> {
        let file = self.get()?;
        if let Some(cache) = self.cache.take() {
            cache.forget(&self.slot);
        }
        // A fresh slot: a racing eviction holding the old one can no longer close this handle.
        self.slot = Arc::new(Mutex::new(SlotState {
            file: Some(file),
            tick: None,
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultFs;

    fn files(fs: &Arc<dyn FileSystem>, n: usize) -> Vec<SegmentFile> {
        fs.create_dir_all(Path::new("/d")).unwrap();
        (0..n)
            .map(|i| {
                let path = PathBuf::from(format!("/d/{i}"));
                let file = fs.open(&path, true).unwrap();
                SegmentFile::pinned(fs, path, file)
            })
            .collect()
    }

    fn is_open(f: &SegmentFile) -> bool {
        f.slot.lock().file.is_some()
    }

    #[test]
    fn cache_bounds_open_inactive_files() {
        let fs: Arc<dyn FileSystem> = Arc::new(FaultFs::new());
        let cache = HandleCache::new(2);
        let mut files = files(&fs, 4);
        for f in &mut files {
            f.unpin(&cache, true);
        }
        assert_eq!(cache.open_count(), 2);
        // Reading an evicted one reopens it and evicts another.
        files[0].get().unwrap().write_all_at(b"x", 0).unwrap();
        assert_eq!(cache.open_count(), 2);
        files[1].pin().unwrap();
        files[2].get().unwrap();
        files[3].get().unwrap();
        assert!(is_open(&files[1]), "pinned handles are never closed");
        assert_eq!(cache.open_count(), 2);
    }

    #[test]
    fn least_recently_used_goes_first() {
        let fs: Arc<dyn FileSystem> = Arc::new(FaultFs::new());
        let cache = HandleCache::new(2);
        let mut files = files(&fs, 3);
        files[0].unpin(&cache, true);
        files[1].unpin(&cache, true);
        // Using 0 again makes 1 the least recently used, so opening 2 closes 1, not 0.
        files[0].get().unwrap();
        files[2].unpin(&cache, true);
        assert!(is_open(&files[0]) && !is_open(&files[1]) && is_open(&files[2]));
        // Dropped segments free their place at once.
        drop(files.remove(0));
        files[0].get().unwrap(); // file 1 reopens without closing file 2
        assert!(is_open(&files[0]) && is_open(&files[1]));
        assert_eq!(cache.open_count(), 2);
    }
}
