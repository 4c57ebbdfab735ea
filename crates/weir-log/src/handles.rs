//! Bounded open file handles: an active segment keeps its `.log` open; inactive segments open
//! theirs on demand and share a [`HandleCache`] that closes the oldest when full, so a node
//! with many partitions and segments keeps a predictable number of files open.

use crate::fs::{File, FileSystem};
use crate::{Error, Result};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

type Slot = Mutex<Option<Arc<dyn File>>>;

/// Open handles of inactive segments, closed first-in first-out beyond a capacity. Cloning
/// shares the cache; a [`crate::LogManager`] shares one among all its logs.
#[derive(Clone)]
pub struct HandleCache {
    inner: Arc<Mutex<Queue>>,
}

struct Queue {
    capacity: usize,
    open: VecDeque<Weak<Slot>>,
}

impl fmt::Debug for HandleCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queue = self.inner.lock();
        f.debug_struct("HandleCache")
            .field("capacity", &queue.capacity)
            .field("entries", &queue.open.len())
            .finish()
    }
}

impl HandleCache {
    /// A cache keeping at most `capacity` inactive segment files open (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Queue {
                capacity: capacity.max(1),
                open: VecDeque::new(),
            })),
        }
    }

    /// Number of inactive segment files currently open through this cache.
    pub fn open_count(&self) -> usize {
        self.inner
            .lock()
            .open
            .iter()
            .filter(|w| w.upgrade().is_some_and(|s| s.lock().is_some()))
            .count()
    }

    fn admit(&self, slot: &Arc<Slot>) {
        let evicted: Vec<Arc<Slot>> = {
            let mut queue = self.inner.lock();
            queue.open.retain(|w| w.strong_count() > 0);
            queue.open.push_back(Arc::downgrade(slot));
            let excess = queue.open.len().saturating_sub(queue.capacity);
            queue
                .open
                .drain(..excess)
                .filter_map(|w| w.upgrade())
                .collect()
        };
        for slot in evicted {
            slot.lock().take();
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

impl SegmentFile {
    /// A pinned handle to an open file.
    pub(crate) fn pinned(fs: &Arc<dyn FileSystem>, path: PathBuf, file: Arc<dyn File>) -> Self {
        Self {
            path,
            fs: fs.clone(),
            cache: None,
            slot: Arc::new(Mutex::new(Some(file))),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, reopening it if the cache closed it.
    pub(crate) fn get(&self) -> Result<Arc<dyn File>> {
        if let Some(file) = self.slot.lock().clone() {
            return Ok(file);
        }
        let file = self
            .fs
            .open(&self.path, false)
            .map_err(Error::io("open segment", &self.path))?;
        *self.slot.lock() = Some(file.clone());
        if let Some(cache) = &self.cache {
            cache.admit(&self.slot);
        }
        Ok(file)
    }

    /// The segment became inactive: its handle now lives in `cache` (or is closed at once
    /// when `keep_open` is false) and is reopened on demand.
    pub(crate) fn unpin(&mut self, cache: &HandleCache, keep_open: bool) {
        if keep_open {
            cache.admit(&self.slot);
        } else {
            self.slot.lock().take();
        }
        self.cache = Some(cache.clone());
    }

    /// The segment became active again (after a truncation): keep its file open.
    pub(crate) fn pin(&mut self) -> Result<()> {
        let file = self.get()?;
        // A fresh slot: the cache's reference to the old one can no longer close this handle.
        self.slot = Arc::new(Mutex::new(Some(file)));
        self.cache = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultFs;

    #[test]
    fn cache_bounds_open_inactive_files() {
        let fs: Arc<dyn FileSystem> = Arc::new(FaultFs::new());
        fs.create_dir_all(Path::new("/d")).unwrap();
        let cache = HandleCache::new(2);
        let mut files: Vec<SegmentFile> = (0..4)
            .map(|i| {
                let path = PathBuf::from(format!("/d/{i}"));
                let file = fs.open(&path, true).unwrap();
                SegmentFile::pinned(&fs, path, file)
            })
            .collect();
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
        assert!(
            files[1].slot.lock().is_some(),
            "pinned handles are never closed"
        );
    }
}
