//! The raft log, the vote and the commit index on disk, as openraft's `RaftLogStorage`.
//!
//! `raft.log` is a sequence of frames (length, CRC-32C, JSON payload), each either one raft
//! entry or a `Purged` marker naming the last log id removed from the front. Appends are
//! written and fsynced before openraft is told they are flushed. Truncation cuts the file at the
//! first removed entry and fsyncs. Purging rewrites the file (a `Purged` marker, then the
//! entries kept) into a temporary file that is fsynced and renamed over the log: the metadata
//! log is purged once per snapshot, and what is kept after a snapshot is small.
//!
//! On open every frame is checked; the first torn or corrupt frame, or an entry whose index
//! does not follow its predecessor, ends the log: the file is truncated there and the loss
//! logged. Only a tail that was never acknowledged can be torn, since every acknowledged append
//! was fsynced whole.
//!
//! The entries since the last purge also stay in memory (openraft reads them back to replicate
//! and apply); the log is small because a snapshot every `snapshot_every` entries lets it be
//! purged.
//!
//! `vote` holds the vote in one frame, replaced atomically (temporary file, fsync, rename,
//! directory fsync) before `save_vote` returns. `committed` holds the last commit index known;
//! it is a hint for replaying the log into the image at start-up, so it is overwritten in place
//! without fsync, and a torn or stale one only means less is replayed before the leader says more.

use super::file::{self, blocking, invalid};
use super::{Entry, LogId, NodeId, TypeConfig, Vote};
use crate::MetadataRecord;
use openraft::EntryPayload;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    ErrorSubject, ErrorVerb, OptionalSend, RaftLogId, RaftLogReader, StorageError, StorageIOError,
};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "vote";
const COMMITTED_FILE: &str = "committed";

/// One frame of `raft.log`, as written.
#[derive(Serialize)]
enum FrameOut<'a> {
    Entry(&'a Entry),
    Purged(&'a LogId),
}

/// One frame of `raft.log`, as read.
#[derive(Deserialize)]
enum FrameIn {
    Entry(Entry),
    Purged(LogId),
}

/// Reads the in-memory copy of the log; openraft hands clones to its replication tasks.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogReader {
    entries: Arc<RwLock<BTreeMap<u64, Entry>>>,
    committed: Arc<Mutex<Option<LogId>>>,
}

impl LogReader {
    /// The last commit index this node knows (saved by openraft as it applies).
    pub(crate) fn committed(&self) -> Option<LogId> {
        *self.committed.lock()
    }

    /// Whether `id` names a committed index with another log id than this node's: no real
    /// leader sends that (a leader's log holds every committed entry), and openraft assumes it
    /// never happens, so such a request is refused before it reaches openraft.
    pub(crate) fn contradicts_committed(&self, id: &LogId) -> bool {
        let Some(committed) = self.committed() else {
            return false;
        };
        if id.index > committed.index {
            return false;
        }
        if id.index == committed.index && *id != committed {
            return true;
        }
        self.entries
            .read()
            .get(&id.index)
            .is_some_and(|local| local.get_log_id() != id)
    }

    /// The records of the entries `from..=to`, each at its index (blank and membership
    /// entries as empty batches), or `None` when the log no longer holds one of them.
    pub(crate) fn records(&self, from: u64, to: u64) -> Option<Vec<(u64, Vec<MetadataRecord>)>> {
        let entries = self.entries.read();
        (from..=to)
            .map(|index| {
                let entry = entries.get(&index)?;
                Some((
                    index,
                    match &entry.payload {
                        EntryPayload::Normal(records) => records.clone(),
                        _ => Vec::new(),
                    },
                ))
            })
            .collect()
    }

    /// The entry at `index`, if the log holds it.
    #[cfg(test)]
    pub(crate) fn entry(&self, index: u64) -> Option<Entry> {
        self.entries.read().get(&index).cloned()
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        Ok(self
            .entries
            .read()
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

/// The on-disk log, vote and commit index of one node.
pub(crate) struct LogStore {
    dir: PathBuf,
    file: File,
    /// The file's length: where the next frame goes.
    len: u64,
    /// Where each entry's frame starts, for truncation.
    positions: BTreeMap<u64, u64>,
    reader: LogReader,
    purged: Option<LogId>,
    vote: Option<Vote>,
    committed_file: File,
    /// Set when a write or fsync failed: the file's state is unknown, so nothing more is
    /// written until the node restarts and recovers it.
    broken: bool,
}

impl LogStore {
    /// Opens the log in `dir` (created if missing), truncating a torn or corrupt tail.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut entries = BTreeMap::new();
        let mut positions = BTreeMap::new();
        let mut purged: Option<LogId> = None;
        let mut pos = 0usize;
        let mut damage = None;
        while let Some(rest) = bytes.get(pos..) {
            let (payload, len) = match file::get_frame(rest) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(why) => {
                    damage = Some(why.to_string());
                    break;
                }
            };
            match serde_json::from_slice::<FrameIn>(payload) {
                Ok(FrameIn::Entry(entry)) => {
                    let index = entry.get_log_id().index;
                    let expected = match (entries.keys().next_back(), purged) {
                        (Some(last), _) => Some(last + 1),
                        (None, Some(p)) => Some(p.index + 1),
                        (None, None) => None,
                    };
                    if expected.is_some_and(|e| e != index) {
                        damage = Some(format!("entry {index} out of order"));
                        break;
                    }
                    positions.insert(index, pos as u64);
                    entries.insert(index, entry);
                }
                Ok(FrameIn::Purged(id)) => {
                    entries.retain(|i, _| *i > id.index);
                    positions.retain(|i, _| *i > id.index);
                    purged = Some(id);
                }
                Err(e) => {
                    damage = Some(format!("an undecodable frame ({e})"));
                    break;
                }
            }
            pos += len;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        if let Some(why) = damage {
            tracing::warn!(
                path = %path.display(),
                at = pos,
                dropped_bytes = bytes.len() - pos,
                "metadata log: truncating a torn or corrupt tail: {why}"
            );
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(pos as u64))?;

        let vote = match file::read_framed(&dir.join(VOTE_FILE))? {
            Some(payload) => Some(serde_json::from_slice(&payload).map_err(invalid)?),
            None => None,
        };
        let committed_path = dir.join(COMMITTED_FILE);
        let committed = match file::read_framed(&committed_path) {
            Ok(Some(payload)) => serde_json::from_slice(&payload).ok(),
            Ok(None) => None,
            Err(e) => {
                // Only a hint: the leader's commit index will bring this node forward.
                tracing::warn!(error = %e, "metadata log: ignoring an unreadable commit index");
                None
            }
        };
        let committed_file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&committed_path)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            len: pos as u64,
            positions,
            reader: LogReader {
                entries: Arc::new(RwLock::new(entries)),
                committed: Arc::new(Mutex::new(committed)),
            },
            purged,
            vote,
            committed_file,
            broken: false,
        })
    }

    /// A reader sharing this log's entries and commit index.
    pub(crate) fn reader(&self) -> LogReader {
        self.reader.clone()
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.reader
            .entries
            .read()
            .values()
            .next_back()
            .map(|e| *e.get_log_id())
            .or(self.purged)
    }

    fn check_usable(&self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "an earlier write to the metadata log failed; restart to recover",
            ));
        }
        Ok(())
    }

    fn write_entries(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        self.check_usable()?;
        let Some(first) = entries.first().map(|e| e.get_log_id().index) else {
            return Ok(());
        };
        // openraft truncates before it overwrites; this keeps the file consistent if it ever
        // did not.
        if self.positions.contains_key(&first) {
            self.truncate_from(first)?;
        }
        let mut buf = Vec::new();
        let mut at = Vec::with_capacity(entries.len());
        for entry in &entries {
            at.push(self.len + buf.len() as u64);
            let payload = serde_json::to_vec(&FrameOut::Entry(entry)).map_err(invalid)?;
            file::put_frame(&mut buf, &payload)?;
        }
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            self.broken = true;
            return Err(e);
        }
        self.len += buf.len() as u64;
        let mut map = self.reader.entries.write();
        for (entry, pos) in entries.into_iter().zip(at) {
            let index = entry.get_log_id().index;
            self.positions.insert(index, pos);
            map.insert(index, entry);
        }
        Ok(())
    }

    /// Removes entries at and after `index`.
    fn truncate_from(&mut self, index: u64) -> io::Result<()> {
        self.check_usable()?;
        let Some(&pos) = self.positions.range(index..).next().map(|(_, p)| p) else {
            return Ok(());
        };
        self.reader.entries.write().split_off(&index);
        self.positions.split_off(&index);
        let cut = self
            .file
            .set_len(pos)
            .and_then(|()| self.file.seek(SeekFrom::Start(pos)).map(|_| ()))
            .and_then(|()| self.file.sync_data());
        if let Err(e) = cut {
            self.broken = true;
            return Err(e);
        }
        self.len = pos;
        Ok(())
    }

    /// Removes entries up to and including `id`, rewriting the file without them.
    fn purge_upto(&mut self, id: LogId) -> io::Result<()> {
        self.check_usable()?;
        if self.purged.is_some_and(|p| p.index >= id.index) {
            return Ok(());
        }
        let kept: Vec<Entry> = {
            let mut map = self.reader.entries.write();
            let kept = map.split_off(&(id.index + 1));
            let kept_entries = kept.values().cloned().collect();
            *map = kept;
            kept_entries
        };
        let mut buf = Vec::new();
        file::put_frame(
            &mut buf,
            &serde_json::to_vec(&FrameOut::Purged(&id)).map_err(invalid)?,
        )?;
        let mut positions = BTreeMap::new();
        for entry in &kept {
            positions.insert(entry.get_log_id().index, buf.len() as u64);
            let payload = serde_json::to_vec(&FrameOut::Entry(entry)).map_err(invalid)?;
            file::put_frame(&mut buf, &payload)?;
        }
        let path = self.dir.join(LOG_FILE);
        let reopened = file::replace_file(&path, &buf).and_then(|()| {
            let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
            file.seek(SeekFrom::End(0))?;
            Ok(file)
        });
        match reopened {
            Ok(file) => self.file = file,
            Err(e) => {
                self.broken = true;
                return Err(e);
            }
        }
        self.len = buf.len() as u64;
        self.positions = positions;
        self.purged = Some(id);
        Ok(())
    }

    fn write_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let payload = serde_json::to_vec(vote).map_err(invalid)?;
        file::write_atomic(&self.dir.join(VOTE_FILE), &payload)?;
        self.vote = Some(*vote);
        Ok(())
    }

    fn write_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        *self.reader.committed.lock() = committed;
        let mut buf = Vec::new();
        file::put_frame(&mut buf, &serde_json::to_vec(&committed).map_err(invalid)?)?;
        self.committed_file.seek(SeekFrom::Start(0))?;
        self.committed_file.write_all(&buf)
    }
}

fn io_error(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: io::Error) -> StorageError<NodeId> {
    StorageError::from_io_error(subject, verb, e)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        self.reader.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        Ok(LogState {
            last_purged_log_id: self.purged,
            last_log_id: self.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<NodeId>> {
        blocking(|| self.write_vote(vote))
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<NodeId>> {
        Ok(self.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError<NodeId>> {
        blocking(|| self.write_committed(committed))
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        Ok(self.reader.committed())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        match blocking(|| self.write_entries(entries)) {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        blocking(|| self.truncate_from(log_id.index))
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        blocking(|| self.purge_upto(log_id))
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
