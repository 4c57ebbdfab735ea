//! The file-system seam: everything the log does to disk goes through [`FileSystem`] and
//! [`File`], so tests can swap in [`crate::fault::FaultFs`] to tear writes, fail fsyncs and
//! crash.

use std::cell::Cell;
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// A directory tree of files. Paths are absolute or relative to the process; the log only
/// touches paths under its own partition directory.
pub trait FileSystem: Send + Sync + fmt::Debug + 'static {
    /// Creates `path` and any missing parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Opens `path` for reading and writing, creating it (empty) when `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn File>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Names of the entries of a directory, in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// When the file was last modified, in milliseconds since the Unix epoch (`retention.ms`
    /// falls back to it for segments without timestamps).
    fn modified_ms(&self, path: &Path) -> io::Result<i64>;
    /// Makes creations, renames and removals of entries of directory `path` durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// An open file addressed by position (pread/pwrite), shared between the writer and readers.
pub trait File: Send + Sync + fmt::Debug {
    /// Reads at most `buf.len()` bytes at `pos`; 0 means end of file.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `pos`. On error an unknown prefix may have been written.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// Current length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the data written so far durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// The underlying OS file, for `sendfile` on plaintext listeners; `None` for in-memory files.
    fn as_std(&self) -> Option<&std::fs::File> {
        None
    }
}

/// Replaces the file at `path` with `bytes` so that a crash leaves either the old file or the
/// new one, never a torn mix: writes `<name>.tmp` beside it, fsyncs it, renames it over `path`
/// and fsyncs the directory; only once that returns is the new content durable. A `.tmp`
/// leftover from a crash in between is removed when a log opens its directory (elsewhere it is
/// simply overwritten by the next write).
///
/// The one copy of this sequence in Weir: checkpoints, indexes, the broker's
/// `meta.properties` and producer state snapshots all go through it (with [`StdFs`] outside a
/// log).
pub fn write_atomically(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> crate::Result<()> {
    use crate::Error;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(crate::checkpoint::TMP_SUFFIX);
    let tmp = path.with_file_name(tmp_name);
    let file = fs.open(&tmp, true).map_err(Error::io("create", &tmp))?;
    file.set_len(0).map_err(Error::io("truncate", &tmp))?;
    file.write_all_at(bytes, 0)
        .map_err(Error::io("write", &tmp))?;
    file.sync_data().map_err(Error::io("fsync", &tmp))?;
    drop(file);
    fs.rename(&tmp, path).map_err(Error::io("rename", &tmp))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs.sync_dir(dir).map_err(Error::io("fsync directory", dir))
}

/// Reads exactly `buf.len()` bytes at `pos`, failing with `UnexpectedEof` on a short file.
pub(crate) fn read_exact_at(file: &dyn File, mut buf: &mut [u8], mut pos: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, pos) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = buf.get_mut(n..).unwrap_or_default();
                pos += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads up to `buf.len()` bytes at `pos`, stopping early only at end of file.
pub(crate) fn read_up_to(file: &dyn File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..) {
        if rest.is_empty() {
            break;
        }
        match file.read_at(rest, pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Watches the blocking operations of [`StdFs`]: called with the operation's name and path
/// before each one, on the thread about to block. Services built on the log (the broker) run
/// file I/O off their async runtime's worker threads; their tests install an observer that
/// reports any operation outside [`allow_blocking`] on a runtime thread. One per process,
/// the first wins; without one an operation costs a single atomic load.
pub type BlockingIoObserver = Box<dyn Fn(&'static str, &Path) + Send + Sync>;

static OBSERVER: OnceLock<BlockingIoObserver> = OnceLock::new();

thread_local! {
    static BLOCKING_ALLOWED: Cell<bool> = const { Cell::new(false) };
}

/// Installs the process's [`BlockingIoObserver`]; false when one was installed already.
pub fn observe_blocking_io(observer: BlockingIoObserver) -> bool {
    OBSERVER.set(observer).is_ok()
}

/// Runs `f` as code that may block on file I/O (a blocking-pool task, a dedicated thread):
/// what [`blocking_allowed`] reports inside it.
pub fn allow_blocking<R>(f: impl FnOnce() -> R) -> R {
    let before = BLOCKING_ALLOWED.replace(true);
    // Restored even when `f` unwinds, so a caught panic does not leave the thread marked.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            BLOCKING_ALLOWED.set(self.0);
        }
    }
    let _restore = Restore(before);
    f()
}

/// Whether the current thread is inside [`allow_blocking`].
pub fn blocking_allowed() -> bool {
    BLOCKING_ALLOWED.get()
}

fn observe(op: &'static str, path: &Path) {
    if let Some(observer) = OBSERVER.get() {
        observer(op, path);
    }
}

/// The real file system through `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile {
    file: std::fs::File,
    /// For [`BlockingIoObserver`]s.
    path: PathBuf,
}

impl File for StdFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        observe("read", &self.path);
        self.file.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        observe("write", &self.path);
        FileExt::write_all_at(&self.file, buf, pos)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        observe("set_len", &self.path);
        self.file.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        observe("fsync", &self.path);
        self.file.sync_data()
    }
    fn as_std(&self) -> Option<&std::fs::File> {
        Some(&self.file)
    }
}

impl FileSystem for StdFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        observe("create_dir_all", path);
        std::fs::create_dir_all(path)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn File>> {
        observe("open", path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(StdFile {
            file,
            path: path.to_path_buf(),
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        observe("remove_file", path);
        std::fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        observe("remove_dir_all", path);
        std::fs::remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        observe("rename", from);
        std::fs::rename(from, to)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        observe("list_dir", path);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn modified_ms(&self, path: &Path) -> io::Result<i64> {
        let modified = std::fs::metadata(path)?.modified()?;
        let ms = match modified.duration_since(std::time::UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Ok(ms)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        observe("fsync_dir", path);
        std::fs::File::open(path)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_whole_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.properties");
        write_atomically(&StdFs, &path, b"a much longer first version\n").unwrap();
        write_atomically(&StdFs, &path, b"short\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"short\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("meta.properties")]);
    }

    /// A crash before the rename leaves the old content; the temp file is what is torn.
    #[test]
    fn a_crash_during_an_atomic_write_keeps_the_old_file() {
        let fs = crate::fault::FaultFs::new();
        let path = Path::new("/d/checkpoint");
        fs.create_dir_all(Path::new("/d")).unwrap();
        write_atomically(&fs, path, b"old").unwrap();
        fs.fail_syncs(1);
        assert!(write_atomically(&fs, path, b"new").is_err());
        let after = fs.crash();
        assert_eq!(after.read_all(path).unwrap(), b"old");
    }
    use crate::config::{Clock, SystemClock};

    #[test]
    fn std_modification_time_is_the_write_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let before = SystemClock.now_ms();
        StdFs
            .open(&path, true)
            .unwrap()
            .write_all_at(b"x", 0)
            .unwrap();
        let modified = StdFs.modified_ms(&path).unwrap();
        // File systems may round timestamps down to their granularity (up to 2 s on FAT).
        assert!(
            modified >= before - 2_000 && modified <= SystemClock.now_ms(),
            "{modified}"
        );
        assert!(StdFs.modified_ms(&dir.path().join("missing")).is_err());
    }
}
