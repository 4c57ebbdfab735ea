//! The Raft quorum that replicates the metadata log, on [openraft] 0.9.
//!
//! Each voter keeps the log, its vote and snapshots in its metadata directory
//! ([`storage`](self) and the state machine, fsynced before they count) and applies committed
//! entries to a [`MetadataImage`]: one entry is one batch of [`MetadataRecord`]s, applied with
//! [`MetadataImage::apply`] at the entry's raft log index, so an image's offset is always the
//! raft index of the last entry applied (blank and membership entries apply as empty batches).
//! RPCs between voters go through a [`Transport`] the embedder provides; [`Quorum::handle_rpc`]
//! serves the ones that arrive.
//!
//! Raft does not defend against a lying peer: the transport must only carry traffic from the
//! configured voters. Malformed requests, and requests that break what a leader's requests
//! always satisfy, are refused without reaching openraft.

mod file;
mod network;
mod observer;
mod state_machine;
mod storage;

#[cfg(test)]
mod tests;

use crate::{ApplyError, MetadataImage, MetadataRecord};
use network::{NetworkFactory, Request, RequestBody, Response};
pub use observer::{Observer, ObserverConfig};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Cursor;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use storage::{LogReader, LogStore};
use tokio::sync::watch;

/// A voter's id: its `node.id`.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's types for the metadata log: an entry's data is one batch of records.
    pub(crate) TypeConfig:
        D = Vec<MetadataRecord>,
        R = Applied,
);

type Entry = openraft::impls::Entry<TypeConfig>;
type LogId = openraft::LogId<NodeId>;
type Vote = openraft::Vote<NodeId>;
type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;

/// What applying one entry produced, handed back to the node that appended it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Applied {
    offset: u64,
    /// Why the batch was refused. Never sent anywhere: the writer is on the node that applied.
    #[serde(skip)]
    error: Option<ApplyError>,
}

/// How a node takes part in the quorum.
#[derive(Clone, Debug)]
pub struct QuorumConfig {
    /// This node's id; it must be one of `voters`.
    pub node_id: NodeId,
    /// `controller.quorum.voters`: node id → `host:port` of its CONTROLLER listener, passed as
    /// is to the [`Transport`].
    pub voters: BTreeMap<NodeId, String>,
    /// The node's metadata directory (e.g. `<log dir>/__cluster_metadata-0`); created if missing.
    pub dir: PathBuf,
    /// The election timeout's range in milliseconds (min, max); a follower that hears nothing
    /// from a leader for a random time in it starts an election. Leaders send heartbeats every
    /// min / 4.
    pub election_timeout_ms: (u64, u64),
    /// A snapshot is taken after this many entries since the last; the log before it is then
    /// purged.
    pub snapshot_every: u64,
}

impl Default for QuorumConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            voters: BTreeMap::new(),
            dir: PathBuf::from("__cluster_metadata-0"),
            election_timeout_ms: (1000, 2000),
            snapshot_every: 10_000,
        }
    }
}

/// A boxed future a [`Transport`] returns.
pub type TransportFuture =
    Pin<Box<dyn Future<Output = Result<bytes::Bytes, TransportError>> + Send + 'static>>;

/// How RPCs reach other voters. The broker carries them over TCP on its CONTROLLER listener;
/// tests use an in-memory one. The bytes are opaque: the receiving node passes them to
/// [`Quorum::handle_rpc`] and returns what that returns.
pub trait Transport: Send + Sync + 'static {
    /// Sends `rpc` to voter `target` at `address` and resolves to its response.
    fn send(&self, target: NodeId, address: &str, rpc: bytes::Bytes) -> TransportFuture;
}

/// Why a [`Transport`] could not deliver an RPC or bring back its response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No connection to the target (refused, reset, unknown address). openraft backs off
    /// before trying that target again.
    #[error("voter unreachable: {0}")]
    Unreachable(String),
    /// No response in time.
    #[error("the RPC timed out")]
    Timeout,
    /// Anything else on the way (a broken frame, a connection lost mid-response).
    #[error("RPC failed on the way")]
    Io(#[source] std::io::Error),
}

/// Who leads the quorum, as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// The leader this node knows of, if any.
    pub leader: Option<NodeId>,
    /// The term (Kafka's leader epoch of the metadata log) this node is in.
    pub term: u64,
    /// Whether this node is the leader.
    pub is_self: bool,
}

/// One voter's replication progress, for DescribeQuorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterProgress {
    /// The voter.
    pub node_id: NodeId,
    /// The raft index of the last entry the leader knows this voter holds (for this node
    /// itself: its last log index). `None` where unknown: on a follower, for every other voter.
    /// Kafka's log end offset is this plus one.
    pub matched_index: Option<u64>,
}

/// An observer's progress as the voter it fetches from saw it last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObserverProgress {
    /// The observer (a broker-only node).
    pub node_id: NodeId,
    /// The raft index of the last entry it holds; Kafka's log end offset is this plus one.
    pub matched_index: u64,
    /// When it last fetched, in milliseconds since the Unix epoch.
    pub last_fetch_ms: i64,
}

/// How long an observer that stopped fetching is still listed.
const OBSERVER_EXPIRY_MS: i64 = 60_000;

/// The quorum as this node sees it, for DescribeQuorum (KIP-595) and DescribeCluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumDescription {
    /// This node.
    pub node_id: NodeId,
    /// The leader, if known.
    pub leader: Option<NodeId>,
    /// The current term (leader epoch).
    pub term: u64,
    /// The raft index of the last committed entry this node knows; Kafka's high watermark is
    /// this plus one.
    pub commit_index: Option<u64>,
    /// The raft index of the last entry applied to this node's image.
    pub last_applied: Option<u64>,
    /// Every voter, by id.
    pub voters: Vec<VoterProgress>,
    /// The observers that fetched from this node in the last minute, by id.
    #[serde(default)]
    pub observers: Vec<ObserverProgress>,
}

/// Why a quorum operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumError {
    /// This node is not the leader; `leader` is the one it knows of.
    #[error("not the metadata quorum leader (leader: {leader:?})")]
    NotLeader {
        /// The leader, if known.
        leader: Option<NodeId>,
    },
    /// The entry was committed and consumed, but the image refused its records (every node
    /// refuses them the same way).
    #[error("the committed batch was refused by the image")]
    Apply(#[source] ApplyError),
    /// The configuration cannot work.
    #[error("invalid quorum configuration: {0}")]
    Config(String),
    /// Opening the metadata directory failed.
    #[error("cannot open the metadata directory {}", path.display())]
    Open {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The raft engine failed or has stopped (after [`Quorum::shutdown`], or after a storage
    /// error, which stops it so nothing unsafe happens).
    #[error("the metadata quorum's raft failed")]
    Raft(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl QuorumError {
    fn raft(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        QuorumError::Raft(Box::new(e))
    }
}

/// One node's membership in the metadata quorum. Cloning is cheap; clones share the node.
#[derive(Clone)]
pub struct Quorum {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: NodeId,
    voters: BTreeMap<NodeId, String>,
    raft: Raft<TypeConfig>,
    images: watch::Receiver<Arc<MetadataImage>>,
    leadership: watch::Receiver<Leadership>,
    log: LogReader,
    /// Observers that fetch from this node: node id → (matched index, last fetch ms).
    observers: parking_lot::Mutex<BTreeMap<NodeId, (u64, i64)>>,
}

impl Quorum {
    /// Opens (or creates) the log, vote and snapshot in `config.dir`, restores the image from
    /// the last snapshot and the committed log after it, and starts raft. A node whose log is
    /// empty and that never voted initializes the membership with all voters: every voter may
    /// do so, since all of them write the same first entry, and openraft refuses a second
    /// initialization harmlessly.
    pub async fn start(
        config: QuorumConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<Quorum, QuorumError> {
        let (min, max) = config.election_timeout_ms;
        if !config.voters.contains_key(&config.node_id) {
            return Err(QuorumError::Config(format!(
                "node {} is not one of the voters {:?}",
                config.node_id,
                config.voters.keys().collect::<Vec<_>>()
            )));
        }
        let raft_config = openraft::Config {
            cluster_name: "weir-metadata".into(),
            election_timeout_min: min,
            election_timeout_max: max,
            heartbeat_interval: (min / 4).max(1),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: config.snapshot_every.clamp(1, 1000),
            purge_batch_size: config.snapshot_every.clamp(1, 64),
            ..Default::default()
        }
        .validate()
        .map_err(|e| QuorumError::Config(e.to_string()))?;

        let open_error = |source| QuorumError::Open {
            path: config.dir.clone(),
            source,
        };
        let dir = config.dir.clone();
        let (log, sm) = file::blocking(|| {
            Ok::<_, std::io::Error>((
                LogStore::open(&dir)?,
                state_machine::StateMachine::open(&dir)?,
            ))
        })
        .map_err(open_error)?;
        let log_reader = log.reader();
        let images = sm.images();
        let network = NetworkFactory {
            transport,
            voters: config.voters.clone(),
        };
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(QuorumError::raft)?;

        let initialized = raft.is_initialized().await.map_err(QuorumError::raft)?;
        if !initialized {
            let members: BTreeMap<NodeId, BasicNode> = config
                .voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(
                    node_id = config.node_id,
                    voters = ?config.voters.keys().collect::<Vec<_>>(),
                    "metadata quorum initialized"
                ),
                Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                    tracing::debug!(error = %e, "metadata quorum already initialized");
                }
                Err(e) => return Err(QuorumError::raft(e)),
            }
        }

        // A lone voter has nobody to wait for: without this, a restarted single node would sit
        // out a whole election timeout before it serves.
        if config.voters.len() == 1 {
            if let Err(e) = raft.trigger().elect().await {
                tracing::debug!(error = %e, "metadata quorum: immediate election not started");
            }
        }
        let leadership = watch_leadership(&raft);
        let image = images.subscribe();
        tracing::info!(
            node_id = config.node_id,
            offset = image.borrow().offset(),
            dir = %config.dir.display(),
            "metadata quorum started"
        );
        Ok(Quorum {
            inner: Arc::new(Inner {
                node_id: config.node_id,
                voters: config.voters,
                raft,
                images: image,
                leadership,
                log: log_reader,
                observers: parking_lot::Mutex::new(BTreeMap::new()),
            }),
        })
    }

    /// The latest applied image. Images are published only after their entry is applied.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.inner.images.borrow().clone()
    }

    /// Every image as it is applied (intermediate ones may be skipped by a slow reader).
    pub fn images(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.inner.images.clone()
    }

    /// Who leads, as this node sees it, updated as it changes.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.inner.leadership.clone()
    }

    /// Appends one batch of records as one raft entry, through this node, which must be the
    /// leader. Returns once the entry is committed and applied to this node's image, with its
    /// offset (raft log index). If the image refused the batch the entry is still consumed,
    /// and [`QuorumError::Apply`] says why.
    pub async fn append(&self, records: Vec<MetadataRecord>) -> Result<u64, QuorumError> {
        match self.inner.raft.client_write(records).await {
            Ok(response) => match response.data.error {
                None => Ok(response.data.offset),
                Some(e) => Err(QuorumError::Apply(e)),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(QuorumError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(QuorumError::raft(e)),
        }
    }

    /// Serves one RPC from another voter (bytes its [`Transport`] carried) and returns the
    /// encoded response. Malformed requests get an encoded refusal; they never reach openraft.
    pub async fn handle_rpc(&self, rpc: bytes::Bytes) -> bytes::Bytes {
        let request: Request = match network::decode(&rpc) {
            Ok(request) => request,
            Err(why) => {
                tracing::debug!(%why, "metadata quorum: refusing a malformed RPC");
                return network::encode(&Response::Refused(why));
            }
        };
        if request.to != self.inner.node_id {
            return network::encode(&Response::Refused(format!(
                "this is node {}, not {}",
                self.inner.node_id, request.to
            )));
        }
        if let Err(why) = network::check_request(&request.body) {
            tracing::warn!(%why, "metadata quorum: refusing an RPC that no leader sends");
            return network::encode(&Response::Refused(why));
        }
        // Only a request from a term at least this node's reaches openraft's log matching; an
        // older one is answered with the newer vote, which is how a stale leader learns to
        // step down, so it must not be refused here.
        let current_term = self.inner.raft.metrics().borrow().current_term;
        if let RequestBody::AppendEntries(rpc) = &request.body {
            let ids = rpc
                .prev_log_id
                .iter()
                .chain(rpc.entries.iter().map(|e| &e.log_id));
            let current = rpc.vote.leader_id().term >= current_term;
            if let Some(id) = ids
                .into_iter()
                .find(|id| current && self.inner.log.contradicts_committed(id))
            {
                let why = format!("log id {id} contradicts a committed entry");
                tracing::warn!(%why, "metadata quorum: refusing an RPC that no leader sends");
                return network::encode(&Response::Refused(why));
            }
        }
        let raft = &self.inner.raft;
        let response = match request.body {
            RequestBody::AppendEntries(rpc) => {
                Response::AppendEntries(raft.append_entries(rpc).await)
            }
            RequestBody::Vote(rpc) => Response::Vote(raft.vote(rpc).await),
            RequestBody::InstallSnapshot(rpc) => {
                Response::InstallSnapshot(raft.install_snapshot(rpc).await)
            }
        };
        network::encode(&response)
    }

    /// The quorum as this node sees it: leader, term, commit index and, on the leader, each
    /// voter's matched index.
    pub fn describe(&self) -> QuorumDescription {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let mut ids: Vec<NodeId> = self.inner.voters.keys().copied().collect();
        ids.extend(metrics.membership_config.membership().voter_ids());
        ids.sort_unstable();
        ids.dedup();
        let voters = ids
            .into_iter()
            .map(|node_id| {
                let matched_index = if node_id == self.inner.node_id {
                    metrics.last_log_index
                } else {
                    metrics
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&node_id))
                        .and_then(|m| m.map(|id| id.index))
                };
                VoterProgress {
                    node_id,
                    matched_index,
                }
            })
            .collect();
        let now = unix_ms();
        let observers = self
            .inner
            .observers
            .lock()
            .iter()
            .filter(|(_, (_, at))| now.saturating_sub(*at) < OBSERVER_EXPIRY_MS)
            .map(|(node_id, (matched_index, at))| ObserverProgress {
                node_id: *node_id,
                matched_index: *matched_index,
                last_fetch_ms: *at,
            })
            .collect();
        QuorumDescription {
            observers,
            node_id: self.inner.node_id,
            leader: metrics.current_leader,
            term: metrics.current_term,
            commit_index: self.inner.log.committed().map(|id| id.index),
            last_applied: metrics.last_applied.map(|id| id.index),
            voters,
        }
    }

    /// Records an observer's fetch (it holds entries up to `matched_index`).
    fn observed(&self, node_id: NodeId, matched_index: u64) {
        let now = unix_ms();
        let mut observers = self.inner.observers.lock();
        observers.retain(|_, (_, at)| now.saturating_sub(*at) < OBSERVER_EXPIRY_MS);
        observers.insert(node_id, (matched_index, now));
    }

    /// Stops raft on this node; the files stay for the next [`Quorum::start`].
    pub async fn shutdown(&self) -> Result<(), QuorumError> {
        self.inner.raft.shutdown().await.map_err(QuorumError::raft)
    }

    /// The records of the entry at `index` in this node's log, if it holds one with records.
    #[cfg(test)]
    pub(crate) fn log_records(&self, index: u64) -> Option<Vec<MetadataRecord>> {
        match self.inner.log.entry(index)?.payload {
            openraft::EntryPayload::Normal(records) => Some(records),
            _ => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn raft(&self) -> &Raft<TypeConfig> {
        &self.inner.raft
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Follows openraft's metrics into a [`Leadership`] channel; the task ends when raft stops.
fn watch_leadership(raft: &Raft<TypeConfig>) -> watch::Receiver<Leadership> {
    let leadership_of = |m: &openraft::RaftMetrics<NodeId, BasicNode>| Leadership {
        leader: m.current_leader,
        term: m.current_term,
        is_self: m.state == ServerState::Leader,
    };
    let mut metrics = raft.metrics();
    let (tx, rx) = watch::channel(leadership_of(&metrics.borrow()));
    tokio::spawn(async move {
        while metrics.changed().await.is_ok() {
            let now = leadership_of(&metrics.borrow_and_update());
            tx.send_if_modified(|current| {
                let changed = *current != now;
                *current = now;
                changed
            });
        }
    });
    rx
}
