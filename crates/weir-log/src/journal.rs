//! [`SyncJournalFs`]: a [`FileSystem`] over a real one that journals what it made durable, and
//! [`power_loss`], which cuts a directory tree back to what a power loss would have left.
//!
//! [`crate::fault::FaultFs`] simulates power loss in memory for unit tests; this module does the
//! same for real processes on real disks: a broker runs with the journal (kill -9 keeps the page
//! cache, so every file is intact afterwards), and a test harness then applies the journal to the
//! stopped broker's data directory before restarting it. [`power_loss_preview`] tells what the
//! cut would do without doing it, so a harness can pause the processes (SIGSTOP) at a moment
//! worth cutting.
//!
//! # The journal
//! One line per event, appended with a single `write(2)` as the operation returns and never
//! fsynced: it only has to survive the death of the process, not a power loss. Files and
//! directories are identified by device and inode number, so a file keeps its identity through
//! renames and through open handles whose path has since changed.
//! - `open`: a file opened, with its length and whether the open created it;
//! - `sync`: a file's `sync_data` succeeded; its length *before* the call is what became durable
//!   (bytes appended concurrently with the fsync may or may not be covered, so they are not);
//! - `set_len`: a file was truncated (a truncation is not durable until the next fsync, so the
//!   durable length becomes the smaller of the two);
//! - `mkdir`: a directory created;
//! - `baseline`: the entries (name and inode) of a directory the first time this process touches
//!   it. The journal assumes the tree is durable when it starts (a fresh directory, or one just
//!   cut by [`power_loss`]), so these entries are durable;
//! - `dirsync`: a directory's `sync_dir` succeeded, with the entries listed just *before* the
//!   call: those are durable now (an entry created concurrently may be missed, never invented);
//! - `rename` and `remove`: for reading the journal; the cut works from inodes.
//!
//! # The power-loss model
//! The model is that of ext4 (`data=ordered`) and xfs as applications may rely on it, taking the
//! harsher outcome wherever the file system may choose:
//! - a file's bytes survive up to its last fsynced length, minus later truncations; a file
//!   created and never fsynced survives empty (delayed allocation);
//! - a directory entry survives as it was at the directory's last fsync (or in the baseline):
//!   creations, renames and removals since then are lost. A rename is durable only once the
//!   target's parent directory is fsynced after it; until then the file goes back to its old
//!   name if that name was durable, and disappears if it was not (a temporary file never synced
//!   into its directory);
//! - a file created through the journaled file system whose entry never became durable is
//!   deleted; so is a directory, with all it holds.
//!
//! Two outcomes cannot be reproduced, since the bytes are gone when the harness runs; the cut
//! takes a real (if milder) outcome instead and counts them in the [`PowerLossReport`]:
//! - a file replaced by a rename or removed and recreated under the same name, without a
//!   directory fsync since: the new file stays, as if the file system's periodic journal commit
//!   had happened (ext4 commits every 5 s, and `auto_da_alloc` writes the new file's data before
//!   such a rename commits);
//! - a file removed without a directory fsync since: it stays removed.
//!
//! Overwrites in place are not modelled (the new bytes stay). Paths the journal never saw are
//! left alone: files created by other code (the metadata quorum, the journal itself) and
//! directories this file system never touched.

use crate::fs::{File, FileSystem};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file or directory: device and inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Inode {
    dev: u64,
    ino: u64,
}

impl Inode {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    fn parse(text: &[u8]) -> io::Result<Self> {
        let text = std::str::from_utf8(text).map_err(|_| bad_journal("inode is not text"))?;
        let (dev, ino) = text
            .split_once(':')
            .ok_or_else(|| bad_journal("inode without ':'"))?;
        Ok(Self {
            dev: dev.parse().map_err(|_| bad_journal("bad device number"))?,
            ino: ino.parse().map_err(|_| bad_journal("bad inode number"))?,
        })
    }
}

impl fmt::Display for Inode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.dev, self.ino)
    }
}

fn bad_journal(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("fsync journal: {what}"))
}

/// One journal line under construction: fields separated by tabs, with `\`, tab and newline
/// escaped so any path fits.
struct Line(Vec<u8>);

impl Line {
    fn new(kind: &str) -> Self {
        Self(kind.as_bytes().to_vec())
    }

    fn field(mut self, bytes: &[u8]) -> Self {
        self.0.push(b'\t');
        for &b in bytes {
            match b {
                b'\\' => self.0.extend_from_slice(b"\\\\"),
                b'\t' => self.0.extend_from_slice(b"\\t"),
                b'\n' => self.0.extend_from_slice(b"\\n"),
                b => self.0.push(b),
            }
        }
        self
    }

    fn path(self, path: &Path) -> Self {
        self.field(path.as_os_str().as_bytes())
    }

    fn value(self, value: impl fmt::Display) -> Self {
        self.field(value.to_string().as_bytes())
    }
}

fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut bytes = field.iter();
    while let Some(&b) = bytes.next() {
        if b == b'\\' {
            match bytes.next() {
                Some(b't') => out.push(b'\t'),
                Some(b'n') => out.push(b'\n'),
                Some(&other) => out.push(other),
                None => {}
            }
        } else {
            out.push(b);
        }
    }
    out
}

#[derive(Debug)]
struct Journal {
    file: Mutex<std::fs::File>,
    /// Directories whose baseline this process has written.
    baselined: Mutex<HashSet<PathBuf>>,
}

impl Journal {
    fn append(&self, line: Line) -> io::Result<()> {
        let mut bytes = line.0;
        bytes.push(b'\n');
        // One write per record: it reaches the page cache before the operation returns, which
        // is all a kill -9 needs. No fsync: the journal does not claim to survive a power loss.
        self.file.lock().write_all(&bytes)
    }

    /// The entries of `dir` with their inodes, read from the real directory.
    fn entries(dir: &Path) -> io::Result<Vec<(OsString, Inode)>> {
        let dev = std::fs::metadata(dir)?.dev();
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            entries.push((
                entry.file_name(),
                Inode {
                    dev,
                    ino: entry.ino(),
                },
            ));
        }
        Ok(entries)
    }

    fn listing(kind: &str, dir: &Path, entries: &[(OsString, Inode)]) -> Line {
        let mut line = Line::new(kind).path(dir);
        for (name, inode) in entries {
            line = line.field(name.as_bytes()).value(inode);
        }
        line
    }

    /// Writes the baseline of `dir` the first time this process touches it.
    fn touch(&self, dir: &Path) -> io::Result<()> {
        let mut baselined = self.baselined.lock();
        if baselined.contains(dir) {
            return Ok(());
        }
        let entries = match Self::entries(dir) {
            Ok(entries) => entries,
            // The operation itself will fail, or create it (recorded as a `mkdir`).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        self.append(Self::listing("baseline", dir, &entries))?;
        baselined.insert(dir.to_path_buf());
        Ok(())
    }

    fn touch_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => self.touch(parent),
            _ => Ok(()),
        }
    }
}

/// A [`FileSystem`] that passes everything to `inner` and appends to a journal file what became
/// durable (see the module docs for the format and the power-loss model), for [`power_loss`].
///
/// `inner` must act on the real paths it is given ([`crate::StdFs`], or a wrapper of it): the
/// journal identifies files by their inode. Each event costs one `write(2)` (plus a directory
/// listing on a directory fsync); it is a test aid, not for production.
#[derive(Debug, Clone)]
pub struct SyncJournalFs {
    inner: Arc<dyn FileSystem>,
    journal: Arc<Journal>,
}

impl SyncJournalFs {
    /// Wraps `inner`, appending to the journal at `journal` (created if missing; a journal
    /// left by an earlier run of the same tree goes on, as after a kill -9).
    pub fn new(inner: Arc<dyn FileSystem>, journal: &Path) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(journal)?;
        Ok(Self {
            inner,
            journal: Arc::new(Journal {
                file: Mutex::new(file),
                baselined: Mutex::new(HashSet::new()),
            }),
        })
    }
}

#[derive(Debug)]
struct JournalFile {
    inner: Arc<dyn File>,
    inode: Inode,
    journal: Arc<Journal>,
}

impl File for JournalFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, pos)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)?;
        self.journal
            .append(Line::new("set_len").value(self.inode).value(len))
    }
    fn sync_data(&self) -> io::Result<()> {
        let len = self.inner.len()?;
        self.inner.sync_data()?;
        self.journal
            .append(Line::new("sync").value(self.inode).value(len))
    }
    fn as_std(&self) -> Option<&std::fs::File> {
        self.inner.as_std()
    }
}

impl FileSystem for SyncJournalFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut existing = Some(path);
        while let Some(dir) = existing {
            if dir.as_os_str().is_empty() || dir.exists() {
                break;
            }
            missing.push(dir);
            existing = dir.parent();
        }
        if let Some(dir) = existing.filter(|d| !d.as_os_str().is_empty()) {
            self.journal.touch(dir)?;
        }
        self.inner.create_dir_all(path)?;
        for dir in missing.into_iter().rev() {
            let inode = Inode::of(&std::fs::metadata(dir)?);
            self.journal
                .append(Line::new("mkdir").value(inode).path(dir))?;
            // Created empty: nothing in it is durable yet.
            self.journal.touch(dir)?;
        }
        Ok(())
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn File>> {
        self.journal.touch_parent(path)?;
        let created = create && !self.inner.exists(path);
        let file = self.inner.open(path, create)?;
        let meta = match file.as_std() {
            Some(std) => std.metadata()?,
            None => std::fs::metadata(path)?,
        };
        let inode = Inode::of(&meta);
        self.journal.append(
            Line::new("open")
                .value(inode)
                .value(u8::from(created))
                .value(meta.len())
                .path(path),
        )?;
        Ok(Arc::new(JournalFile {
            inner: file,
            inode,
            journal: self.journal.clone(),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.journal.touch_parent(path)?;
        self.inner.remove_file(path)?;
        self.journal.append(Line::new("remove").path(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.journal.touch_parent(path)?;
        self.inner.remove_dir_all(path)?;
        self.journal.append(Line::new("remove").path(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.journal.touch_parent(from)?;
        self.journal.touch_parent(to)?;
        self.inner.rename(from, to)?;
        self.journal.append(Line::new("rename").path(from).path(to))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }

    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }

    fn modified_ms(&self, path: &Path) -> io::Result<i64> {
        self.inner.modified_ms(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        // Listed before the fsync: whatever is listed was there when the fsync started.
        let entries = Journal::entries(path)?;
        self.inner.sync_dir(path)?;
        self.journal
            .append(Journal::listing("dirsync", path, &entries))?;
        self.journal.baselined.lock().insert(path.to_path_buf());
        Ok(())
    }
}

/// What [`power_loss`] did to a directory tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PowerLossReport {
    /// Files deleted because their directory entry never became durable.
    pub files_removed: u64,
    /// Directories deleted (with their contents) for the same reason.
    pub dirs_removed: u64,
    /// Bytes of the deleted files and directories.
    pub bytes_removed: u64,
    /// Files cut back to their fsynced length.
    pub files_truncated: u64,
    /// Bytes cut off those files.
    pub bytes_truncated: u64,
    /// Files moved back to their durable name (renames without a directory fsync).
    pub renames_undone: u64,
    /// Durable entries whose file was replaced or removed without a directory fsync since: a
    /// real disk might have kept the old file, which the cut cannot bring back.
    pub entries_not_restored: u64,
}

impl PowerLossReport {
    /// Whether the power loss changed anything.
    pub fn cut_anything(&self) -> bool {
        self.files_removed + self.dirs_removed + self.files_truncated + self.renames_undone > 0
    }
}

impl fmt::Display for PowerLossReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} files and {} directories removed ({} bytes), {} files truncated ({} bytes), \
             {} renames undone, {} entries not restored",
            self.files_removed,
            self.dirs_removed,
            self.bytes_removed,
            self.files_truncated,
            self.bytes_truncated,
            self.renames_undone,
            self.entries_not_restored
        )
    }
}

/// A file or directory at a point of the journal: an inode and how many times it had been
/// created by then (inode numbers are reused).
type Identity = (Inode, u32);

/// The journal replayed: what was durable when the process died.
#[derive(Debug, Default)]
struct Replay {
    generation: HashMap<Inode, u32>,
    /// Identities created while journaling (files and directories).
    created: HashSet<Identity>,
    /// Durable length of every file identity the journal saw opened.
    durable_len: HashMap<Identity, u64>,
    /// Durable entries of each directory the journal saw.
    durable_dirs: BTreeMap<PathBuf, HashMap<OsString, Identity>>,
}

impl Replay {
    fn identity(&self, inode: Inode) -> Identity {
        (inode, self.generation.get(&inode).copied().unwrap_or(0))
    }

    fn create(&mut self, inode: Inode) -> Identity {
        let generation = self.generation.entry(inode).or_insert(0);
        *generation += 1;
        let id = (inode, *generation);
        self.created.insert(id);
        id
    }

    fn read(journal: &Path) -> io::Result<Self> {
        let mut replay = Self::default();
        let bytes = match std::fs::read(journal) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(replay),
            Err(e) => return Err(e),
        };
        // Only whole lines: a torn last one (the process died mid-write) recorded nothing.
        let whole = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(&[][..], |end| bytes.get(..end).unwrap_or_default());
        for (number, line) in whole.split(|&b| b == b'\n').enumerate() {
            let fields: Vec<Vec<u8>> = line.split(|&b| b == b'\t').map(unescape).collect();
            replay.apply(&fields).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{}, line {}: {e}", journal.display(), number + 1),
                )
            })?;
        }
        Ok(replay)
    }

    fn apply(&mut self, fields: &[Vec<u8>]) -> io::Result<()> {
        let field = |i: usize| {
            fields
                .get(i)
                .map(Vec::as_slice)
                .ok_or_else(|| bad_journal("missing field"))
        };
        let number = |i: usize| -> io::Result<u64> {
            std::str::from_utf8(field(i)?)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad_journal("bad number"))
        };
        let path = |i: usize| -> io::Result<PathBuf> {
            Ok(PathBuf::from(OsString::from_vec(field(i)?.to_vec())))
        };
        match field(0)? {
            b"open" => {
                let inode = Inode::parse(field(1)?)?;
                let len = number(3)?;
                if field(2)? == b"1" {
                    let id = self.create(inode);
                    self.durable_len.insert(id, 0);
                } else {
                    // A file first seen existing was there, durable, when journaling began.
                    let id = self.identity(inode);
                    self.durable_len.entry(id).or_insert(len);
                }
            }
            b"sync" => {
                let id = self.identity(Inode::parse(field(1)?)?);
                self.durable_len.insert(id, number(2)?);
            }
            b"set_len" => {
                let id = self.identity(Inode::parse(field(1)?)?);
                let len = number(2)?;
                let durable = self.durable_len.entry(id).or_insert(len);
                *durable = (*durable).min(len);
            }
            b"mkdir" => {
                self.create(Inode::parse(field(1)?)?);
            }
            kind @ (b"baseline" | b"dirsync") => {
                let dir = path(1)?;
                if kind == b"baseline" && self.durable_dirs.contains_key(&dir) {
                    return Ok(());
                }
                let mut entries = HashMap::new();
                for pair in fields.get(2..).unwrap_or_default().chunks(2) {
                    if let [name, inode] = pair {
                        let id = self.identity(Inode::parse(inode)?);
                        entries.insert(OsString::from_vec(name.clone()), id);
                    }
                }
                self.durable_dirs.insert(dir, entries);
            }
            b"rename" | b"remove" => {}
            _ => return Err(bad_journal("unknown event")),
        }
        Ok(())
    }
}

/// Size in bytes and number of files of a tree (or of one file).
fn tree_size(path: &Path) -> (u64, u64) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return (0, 0);
    };
    if !meta.is_dir() {
        return (meta.len(), 1);
    }
    let mut total = (0, 0);
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            let (bytes, files) = tree_size(&entry.path());
            total.0 += bytes;
            total.1 += files;
        }
    }
    total
}

/// Cuts the tree under `dir` back to what a power loss would have left, by the journal a
/// [`SyncJournalFs`] wrote at `journal` (the module docs give the model). Run it on a tree no
/// process is writing (after a kill -9); `dir` itself is taken as durable. The journal is left
/// as it is: remove it before the tree is used again, since the tree it described is gone.
pub fn power_loss(dir: &Path, journal: &Path) -> io::Result<PowerLossReport> {
    cut(dir, journal, true)
}

/// What [`power_loss`] would do now, changing nothing: with the writing processes paused
/// (SIGSTOP), a test can pick a moment at which a power loss would cut something.
pub fn power_loss_preview(dir: &Path, journal: &Path) -> io::Result<PowerLossReport> {
    cut(dir, journal, false)
}

fn cut(dir: &Path, journal: &Path, apply: bool) -> io::Result<PowerLossReport> {
    let replay = Replay::read(journal)?;
    let mut report = PowerLossReport::default();
    // Where each identity durably belongs, and where each one is now.
    let mut durable_at: HashMap<Identity, PathBuf> = HashMap::new();
    let mut now_at: HashMap<Identity, PathBuf> = HashMap::new();
    for (d, entries) in replay.durable_dirs.range(dir.to_path_buf()..) {
        if !d.starts_with(dir) {
            break;
        }
        for (name, id) in entries {
            durable_at.insert(*id, d.join(name));
        }
        for (name, inode) in Journal::entries(d).unwrap_or_default() {
            now_at.insert(replay.identity(inode), d.join(name));
        }
    }
    let mut removals = Vec::new();
    let mut moves = Vec::new();
    for (id, path) in &now_at {
        if let Some(home) = durable_at.get(id) {
            if home != path && home.parent().is_some_and(Path::exists) {
                moves.push((path.clone(), home.clone()));
            }
            continue;
        }
        let durable_occupant = path
            .parent()
            .and_then(|p| replay.durable_dirs.get(p))
            .zip(path.file_name())
            .and_then(|(entries, name)| entries.get(name));
        match durable_occupant {
            // The durable file of this name is gone: keep its replacement (see the module docs).
            Some(old) if !now_at.contains_key(old) => {}
            // Created (or renamed here from a name) that never became durable.
            _ if replay.created.contains(id) || replay.durable_len.contains_key(id) => {
                removals.push(path.clone());
            }
            // Not created through the journaled file system: not ours to cut.
            _ => {}
        }
    }
    for (id, home) in &durable_at {
        // Gone, in a directory that is still there: replaced or removed since its last fsync.
        if !now_at.contains_key(id) && home.parent().is_some_and(Path::exists) {
            report.entries_not_restored += 1;
        }
    }
    // Shallowest first, so a removed directory takes what it holds along.
    removals.sort_by_key(|p| p.components().count());
    let mut removed: Vec<PathBuf> = Vec::new();
    for path in removals {
        if removed.iter().any(|r| path.starts_with(r)) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let (bytes, files) = tree_size(&path);
        report.bytes_removed += bytes;
        if meta.is_dir() {
            report.dirs_removed += 1;
            report.files_removed += files;
        } else {
            report.files_removed += 1;
        }
        removed.push(path);
    }
    let gone = |path: &Path| removed.iter().any(|r| path.starts_with(r));
    // Moves out of a removed directory still happen: the file had a durable name elsewhere.
    report.renames_undone = moves.len() as u64;
    let mut truncations = Vec::new();
    for (id, durable) in &replay.durable_len {
        let Some(path) = now_at.get(id) else {
            continue;
        };
        let moved = durable_at.get(id).filter(|home| *home != path);
        if gone(path) && moved.is_none() {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            continue;
        };
        if !meta.is_file() || Inode::of(&meta) != id.0 || meta.len() <= *durable {
            continue;
        }
        report.files_truncated += 1;
        report.bytes_truncated += meta.len() - durable;
        truncations.push((moved.unwrap_or(path).clone(), *durable));
    }
    if !apply {
        return Ok(report);
    }
    // Files going back to their durable names are moved aside first, so neither a removal nor
    // another move in a chain of renames can touch them, then put in place.
    let mut staged = Vec::new();
    for (i, (from, to)) in moves.into_iter().enumerate() {
        let Some(parent) = to.parent() else { continue };
        let stage = parent.join(format!(".power-loss-{i}"));
        std::fs::rename(&from, &stage)?;
        staged.push((stage, to));
    }
    for path in &removed {
        if std::fs::symlink_metadata(path)?.is_dir() {
            std::fs::remove_dir_all(path)?;
        } else {
            std::fs::remove_file(path)?;
        }
    }
    for (stage, to) in staged {
        std::fs::rename(&stage, &to)?;
    }
    for (path, len) in truncations {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)?
            .set_len(len)?;
    }
    Ok(report)
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
