//! The state machine openraft applies committed entries to: the [`MetadataImage`], published
//! through a watch channel after every applied batch, and its snapshots on disk.
//!
//! The image's offset is always the raft log index of the last entry applied: a batch of
//! records is applied at its index, and blank (leader) and membership entries apply as an empty
//! batch at theirs, which moves the offset and changes nothing else. So a broker that has seen
//! offset `n` has seen every committed entry up to raft index `n`.
//!
//! A snapshot is the file `snapshot`: one CRC-32C frame holding JSON of the snapshot's meta
//! (last log id, membership, id) and the image (which checks itself when deserialized). The
//! same JSON is what is sent to a follower that is too far behind. It is replaced atomically
//! (temporary file, fsync, rename, directory fsync).

use super::file::{self, blocking, invalid};
use super::{Applied, Entry, LogId, NodeId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::MetadataImage;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageError};
use openraft::{OptionalSend, RaftLogId, StorageIOError};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

const SNAPSHOT_FILE: &str = "snapshot";

/// The content of a snapshot.
#[derive(Serialize, Deserialize)]
struct SnapshotContent {
    meta: SnapshotMeta,
    image: MetadataImage,
}

/// The current snapshot: its meta and its serialized content.
#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    bytes: Arc<Vec<u8>>,
}

impl StoredSnapshot {
    fn to_snapshot(&self) -> Snapshot<TypeConfig> {
        Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(self.bytes.as_ref().clone())),
        }
    }
}

/// What applying has produced so far.
#[derive(Clone)]
struct AppliedState {
    image: Arc<MetadataImage>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// The metadata state machine of one node.
pub(crate) struct StateMachine {
    dir: PathBuf,
    state: AppliedState,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
    images: watch::Sender<Arc<MetadataImage>>,
}

impl StateMachine {
    /// Opens the state machine in `dir`: the image from the snapshot there, if any.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (state, current) = match file::read_framed(&dir.join(SNAPSHOT_FILE))? {
            Some(bytes) => {
                let content: SnapshotContent = serde_json::from_slice(&bytes).map_err(invalid)?;
                check_offset(&content)?;
                let state = AppliedState {
                    image: Arc::new(content.image),
                    last_applied: content.meta.last_log_id,
                    membership: content.meta.last_membership.clone(),
                };
                let current = StoredSnapshot {
                    meta: content.meta,
                    bytes: Arc::new(bytes),
                };
                (state, Some(current))
            }
            None => (
                AppliedState {
                    image: Arc::new(MetadataImage::empty()),
                    last_applied: None,
                    membership: StoredMembership::default(),
                },
                None,
            ),
        };
        let (images, _) = watch::channel(state.image.clone());
        Ok(Self {
            dir: dir.to_path_buf(),
            state,
            current: Arc::new(Mutex::new(current)),
            images,
        })
    }

    /// The channel applied images are published on.
    pub(crate) fn images(&self) -> watch::Sender<Arc<MetadataImage>> {
        self.images.clone()
    }

    fn publish(&self) {
        self.images.send_replace(self.state.image.clone());
    }
}

/// A snapshot's image must be at the snapshot's last log index, or the offsets of what is
/// applied after it would not be raft indexes.
fn check_offset(content: &SnapshotContent) -> io::Result<()> {
    let index = content.meta.last_log_id.map_or(0, |id| id.index);
    if content.image.offset() != index {
        return Err(invalid(format!(
            "snapshot image at offset {} but its last log index is {index}",
            content.image.offset()
        )));
    }
    Ok(())
}

/// Builds a snapshot of the state as it was when the builder was made.
pub(crate) struct SnapshotBuilder {
    dir: PathBuf,
    state: AppliedState,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let snapshot_id = match self.state.last_applied {
            Some(id) => format!(
                "{}-{}-{}",
                id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => "empty".to_string(),
        };
        let content = SnapshotContent {
            meta: SnapshotMeta {
                last_log_id: self.state.last_applied,
                last_membership: self.state.membership.clone(),
                snapshot_id,
            },
            image: self.state.image.as_ref().clone(),
        };
        let bytes =
            serde_json::to_vec(&content).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let path = self.dir.join(SNAPSHOT_FILE);
        blocking(|| file::write_atomic(&path, &bytes)).map_err(|e| {
            StorageError::from_io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e)
        })?;
        tracing::info!(
            offset = content.image.offset(),
            bytes = bytes.len(),
            "metadata quorum: snapshot written"
        );
        let stored = StoredSnapshot {
            meta: content.meta,
            bytes: Arc::new(bytes),
        };
        *self.current.lock() = Some(stored.clone());
        Ok(stored.to_snapshot())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), StorageError<NodeId>> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        let mut image = self.state.image.clone();
        for entry in entries {
            let log_id = *entry.get_log_id();
            let (next, error) = match &entry.payload {
                EntryPayload::Normal(records) => {
                    let (next, result) = image.apply(log_id.index, records);
                    if let Err(e) = &result {
                        // Every node refuses the same batch the same way; the controller
                        // validates before writing, so this is a bug or a hostile log.
                        tracing::warn!(offset = log_id.index, error = %e, "metadata batch refused");
                    }
                    (next, result.err())
                }
                EntryPayload::Blank => (image.apply(log_id.index, &[]).0, None),
                EntryPayload::Membership(membership) => {
                    self.state.membership = StoredMembership::new(Some(log_id), membership.clone());
                    (image.apply(log_id.index, &[]).0, None)
                }
            };
            image = Arc::new(next);
            self.state.last_applied = Some(log_id);
            replies.push(Applied {
                offset: log_id.index,
                error,
            });
        }
        self.state.image = image;
        // Published before openraft answers the writer, so `append` returning means the
        // image already shows the batch.
        self.publish();
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            dir: self.dir.clone(),
            state: self.state.clone(),
            current: self.current.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let read_error = |e: &dyn std::error::Error| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                openraft::AnyError::error(e.to_string()),
            ))
        };
        let content: SnapshotContent =
            serde_json::from_slice(&bytes).map_err(|e| read_error(&e))?;
        check_offset(&content).map_err(|e| read_error(&e))?;
        if content.meta.last_log_id != meta.last_log_id {
            return Err(read_error(&invalid(
                "the snapshot's content is for another log id than its meta",
            )));
        }
        // The content is stored with the meta openraft gave, which is what it will ask for.
        let content = SnapshotContent {
            meta: meta.clone(),
            image: content.image,
        };
        let bytes = serde_json::to_vec(&content)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let path = self.dir.join(SNAPSHOT_FILE);
        blocking(|| file::write_atomic(&path, &bytes)).map_err(|e| {
            StorageError::from_io_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        })?;
        tracing::info!(
            offset = content.image.offset(),
            "metadata quorum: snapshot installed from the leader"
        );
        self.state = AppliedState {
            image: Arc::new(content.image),
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        *self.current.lock() = Some(StoredSnapshot {
            meta: meta.clone(),
            bytes: Arc::new(bytes),
        });
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self
            .current
            .lock()
            .as_ref()
            .map(StoredSnapshot::to_snapshot))
    }
}
