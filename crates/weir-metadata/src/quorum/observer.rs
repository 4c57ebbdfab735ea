//! Observers: nodes that follow the committed metadata log without voting (KRaft's brokers
//! with `process.roles=broker`).
//!
//! An [`Observer`] asks a voter for the committed entries after the offset of its image
//! ([`Quorum::serve_fetch`] answers, holding the request up to `max_wait_ms` until there is
//! something new), applies them with [`MetadataImage::apply`] exactly as the voters' state
//! machines do, and publishes each image. A voter whose log no longer holds the entries the
//! observer needs (they went into a snapshot) sends its whole image instead. So an observer's
//! image at offset `n` is the image every voter had at `n`.
//!
//! Only committed entries are served: a voter answers up to the offset of its own applied
//! image, and only committed entries are ever applied. Observers keep nothing on disk: a
//! restarted broker fetches the image again (one snapshot and the entries after it).
//!
//! An observer prefers the quorum's leader, which every answer names (with the voters and
//! their addresses, so a node started with `controller.quorum.bootstrap.servers` learns them);
//! when a voter cannot be reached it tries the next one.

use super::{Leadership, NodeId, Quorum, Transport, network};
use crate::{MetadataImage, MetadataRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Most entries one answer carries; an observer far behind fetches again at once.
const MAX_ENTRIES: usize = 1_000;

/// The longest a voter holds a fetch with nothing new.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// How long an observer waits before trying again after a voter failed it.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// An observer's request: the committed entries after `after`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FetchRequest {
    /// The observer's node id, for DescribeQuorum's list of observers.
    #[serde(default)]
    pub(crate) node_id: Option<NodeId>,
    /// The offset of the observer's image.
    pub(crate) after: u64,
    /// How long the voter may hold the request while it has nothing newer.
    pub(crate) max_wait_ms: u64,
}

/// A voter's answer to a [`FetchRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FetchResponse {
    /// Committed entries after the requested offset, in order, each at its offset (possibly
    /// none, when nothing newer came in time).
    Entries {
        quorum: QuorumView,
        entries: Vec<(u64, Vec<MetadataRecord>)>,
    },
    /// The voter's log no longer holds the next entry: its whole image instead.
    Image {
        quorum: QuorumView,
        image: Box<MetadataImage>,
    },
    /// The request was malformed.
    Refused(String),
}

/// What a voter knows of the quorum, sent with every answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct QuorumView {
    leader: Option<NodeId>,
    term: u64,
    /// Every voter and its address (`controller.quorum.voters` of the answering node).
    voters: BTreeMap<NodeId, String>,
}

impl Quorum {
    /// Serves one observer fetch (bytes a [`Transport`] carried from an [`Observer`]) and
    /// returns the encoded answer.
    pub async fn serve_fetch(&self, rpc: bytes::Bytes) -> bytes::Bytes {
        let request: FetchRequest = match network::decode(&rpc) {
            Ok(request) => request,
            Err(why) => return network::encode(&FetchResponse::Refused(why)),
        };
        if let Some(node_id) = request.node_id {
            self.observed(node_id, request.after);
        }
        let wait = Duration::from_millis(request.max_wait_ms).min(MAX_WAIT);
        let mut images = self.images();
        // Nothing newer in time is not an error: the answer is then empty.
        let _ = tokio::time::timeout(wait, images.wait_for(|i| i.offset() > request.after)).await;
        let image = images.borrow().clone();
        let leadership = self.leadership().borrow().clone();
        let quorum = QuorumView {
            leader: leadership.leader,
            term: leadership.term,
            voters: self.inner.voters.clone(),
        };
        let response = if image.offset() <= request.after {
            FetchResponse::Entries {
                quorum,
                entries: Vec::new(),
            }
        } else {
            let last = image
                .offset()
                .min(request.after.saturating_add(MAX_ENTRIES as u64));
            match self.inner.log.records(request.after + 1, last) {
                Some(entries) => FetchResponse::Entries { quorum, entries },
                None => FetchResponse::Image {
                    quorum,
                    image: Box::new(image.as_ref().clone()),
                },
            }
        };
        network::encode(&response)
    }
}

/// How an observer reaches the quorum.
#[derive(Debug, Clone)]
pub struct ObserverConfig {
    /// This node's id (not a voter's).
    pub node_id: NodeId,
    /// `controller.quorum.voters`, when configured: node id → address. Empty with
    /// `controller.quorum.bootstrap.servers`.
    pub voters: BTreeMap<NodeId, String>,
    /// `controller.quorum.bootstrap.servers`: addresses of some voters, tried until one
    /// answers (which names all of them).
    pub bootstrap: Vec<String>,
}

/// A node that follows the committed metadata log from the voters. Cloning is cheap.
#[derive(Clone)]
pub struct Observer {
    inner: Arc<ObserverInner>,
}

struct ObserverInner {
    images: watch::Receiver<Arc<MetadataImage>>,
    leadership: watch::Receiver<Leadership>,
    voters: watch::Receiver<BTreeMap<NodeId, String>>,
    stop: watch::Sender<bool>,
    task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("offset", &self.inner.images.borrow().offset())
            .finish_non_exhaustive()
    }
}

impl Observer {
    /// Starts following the quorum in the background, from an empty image. Must be called
    /// inside a tokio runtime.
    pub fn start(config: ObserverConfig, transport: Arc<dyn Transport>) -> Observer {
        let (images_tx, images) = watch::channel(Arc::new(MetadataImage::empty()));
        let (leadership_tx, leadership) = watch::channel(Leadership {
            leader: None,
            term: 0,
            is_self: false,
        });
        let (voters_tx, voters) = watch::channel(config.voters.clone());
        let (stop, stopped) = watch::channel(false);
        let follow = Follow {
            node_id: config.node_id,
            bootstrap: config.bootstrap,
            transport,
            images: images_tx,
            leadership: leadership_tx,
            voters: voters_tx,
            next_target: 0,
            next_target_failed: false,
        };
        let task = tokio::spawn(follow.run(stopped));
        Observer {
            inner: Arc::new(ObserverInner {
                images,
                leadership,
                voters,
                stop,
                task: parking_lot::Mutex::new(Some(task)),
            }),
        }
    }

    /// The latest image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.inner.images.borrow().clone()
    }

    /// Every image as it is applied (a slow reader may skip intermediate ones).
    pub fn images(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.inner.images.clone()
    }

    /// The quorum's leader as the last answering voter named it.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.inner.leadership.clone()
    }

    /// The voters and their addresses: configured, or learned from the first answer.
    pub fn voters(&self) -> BTreeMap<NodeId, String> {
        self.inner.voters.borrow().clone()
    }

    /// Stops following; the images stay readable.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let task = self.inner.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The observer's background task.
struct Follow {
    node_id: NodeId,
    bootstrap: Vec<String>,
    transport: Arc<dyn Transport>,
    images: watch::Sender<Arc<MetadataImage>>,
    leadership: watch::Sender<Leadership>,
    voters: watch::Sender<BTreeMap<NodeId, String>>,
    /// Round robin over the known addresses while the leader is unknown or unreachable.
    next_target: usize,
    /// The last fetch failed: try another voter than the leader next.
    next_target_failed: bool,
}

impl Follow {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        loop {
            let ok = tokio::select! {
                _ = stopped.wait_for(|s| *s) => return,
                ok = self.step() => ok,
            };
            if !ok {
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(RETRY_BACKOFF) => {}
                }
            }
        }
    }

    /// Where to fetch from: the leader if its address is known, else the next address.
    fn target(&mut self, after_failure: bool) -> Option<(NodeId, String)> {
        let voters = self.voters.borrow().clone();
        if !after_failure
            && let Some(leader) = self.leadership.borrow().leader
            && let Some(address) = voters.get(&leader).filter(|a| !a.is_empty())
        {
            return Some((leader, address.clone()));
        }
        let mut all: Vec<(NodeId, String)> =
            voters.into_iter().filter(|(_, a)| !a.is_empty()).collect();
        // A bootstrap address's node is unknown until it answers; the id only routes the
        // transport's error messages.
        all.extend(self.bootstrap.iter().map(|a| (NodeId::MAX, a.clone())));
        if all.is_empty() {
            return None;
        }
        self.next_target = self.next_target.wrapping_add(1);
        all.get(self.next_target % all.len()).cloned()
    }

    /// One fetch. Returns whether it succeeded.
    async fn step(&mut self) -> bool {
        let after_failure = self.next_target_failed;
        let Some((target, address)) = self.target(after_failure) else {
            return false;
        };
        let after = self.images.borrow().offset();
        let request = network::encode(&FetchRequest {
            node_id: Some(self.node_id),
            after,
            max_wait_ms: u64::try_from(MAX_WAIT.as_millis()).unwrap_or(1_000),
        });
        let answer = match tokio::time::timeout(
            MAX_WAIT + Duration::from_secs(5),
            self.transport.send(target, &address, request),
        )
        .await
        {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::debug!(node_id = self.node_id, %address, error = %e, "metadata fetch failed");
                self.next_target_failed = true;
                return false;
            }
            Err(_) => {
                tracing::debug!(node_id = self.node_id, %address, "metadata fetch timed out");
                self.next_target_failed = true;
                return false;
            }
        };
        let response: FetchResponse = match network::decode(&answer) {
            Ok(response) => response,
            Err(why) => {
                tracing::warn!(%address, %why, "a voter's metadata answer is malformed");
                self.next_target_failed = true;
                return false;
            }
        };
        self.next_target_failed = false;
        match response {
            FetchResponse::Entries { quorum, entries } => {
                self.learn(quorum);
                let mut image = self.images.borrow().clone();
                for (offset, records) in entries {
                    // An answer that skips an offset cannot be applied: fetch again.
                    if offset != image.offset() + 1 {
                        tracing::warn!(%address, offset, expected = image.offset() + 1, "a voter sent metadata entries out of order");
                        self.next_target_failed = true;
                        return false;
                    }
                    image = Arc::new(image.apply(offset, &records).0);
                }
                self.publish(image);
                true
            }
            FetchResponse::Image { quorum, image } => {
                self.learn(quorum);
                if image.offset() > self.images.borrow().offset() {
                    tracing::info!(offset = image.offset(), "metadata image received whole");
                    self.publish(Arc::new(*image));
                }
                true
            }
            FetchResponse::Refused(why) => {
                tracing::warn!(%address, %why, "a voter refused a metadata fetch");
                self.next_target_failed = true;
                false
            }
        }
    }

    fn learn(&mut self, quorum: QuorumView) {
        if !quorum.voters.is_empty() {
            self.voters.send_if_modified(|v| {
                let changed = *v != quorum.voters;
                if changed {
                    v.clone_from(&quorum.voters);
                }
                changed
            });
        }
        let now = Leadership {
            leader: quorum.leader,
            term: quorum.term,
            is_self: false,
        };
        // Terms only grow: an answer from a voter that lags behind must not undo a newer one.
        self.leadership.send_if_modified(|l| {
            let newer = now.term > l.term
                || (now.term == l.term && l.leader.is_none() && now.leader.is_some());
            if newer {
                *l = now;
            }
            newer
        });
    }

    fn publish(&self, image: Arc<MetadataImage>) {
        self.images.send_if_modified(|current| {
            let newer = image.offset() > current.offset();
            if newer {
                *current = image;
            }
            newer
        });
    }
}
