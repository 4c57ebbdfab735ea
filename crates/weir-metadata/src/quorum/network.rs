//! Raft RPCs between voters: their encoding, the client side over a [`Transport`], and the
//! checks an incoming RPC passes before openraft sees it.
//!
//! An RPC is one byte of format version ([`FORMAT`]) and then JSON of a [`Request`] or a
//! [`Response`]. A request names the node it is meant for, so one that reaches the wrong node
//! (a stale address) is refused rather than obeyed.

use super::{NodeId, Transport, TransportError, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftLogId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The format byte every RPC starts with.
pub(crate) const FORMAT: u8 = 1;

/// The largest RPC [`decode`] accepts; bigger ones are refused before parsing.
const MAX_RPC: usize = 64 * 1024 * 1024;

/// A request from one voter to another.
#[derive(Serialize, Deserialize)]
pub(crate) struct Request {
    /// The node it is meant for.
    pub(crate) to: NodeId,
    pub(crate) body: RequestBody,
}

#[derive(Serialize, Deserialize)]
pub(crate) enum RequestBody {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The answer to a [`Request`].
#[derive(Serialize, Deserialize)]
pub(crate) enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// The request was malformed or failed the checks; openraft never saw it.
    Refused(String),
}

pub(crate) fn encode<T: Serialize>(message: &T) -> bytes::Bytes {
    let mut out = vec![FORMAT];
    if let Err(e) = serde_json::to_writer(&mut out, message) {
        // Our own types always serialize; should one not, the peer gets an undecodable
        // message and treats it as a network error.
        tracing::error!(error = %e, "metadata quorum: could not encode an RPC");
    }
    bytes::Bytes::from(out)
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    if bytes.len() > MAX_RPC {
        return Err(format!("an RPC of {} bytes is over the limit", bytes.len()));
    }
    match bytes.split_first() {
        Some((&FORMAT, json)) => serde_json::from_slice(json).map_err(|e| e.to_string()),
        Some((format, _)) => Err(format!("unknown RPC format {format}")),
        None => Err("an empty RPC".into()),
    }
}

/// Checks what openraft assumes of a leader's request and does not itself verify, so that a
/// malformed or hostile request is refused instead of reaching its assertions: entries follow
/// `prev_log_id` one index at a time, their terms never go down, and no log id carries a term
/// above the sender's vote.
pub(crate) fn check_request(body: &RequestBody) -> Result<(), String> {
    match body {
        RequestBody::AppendEntries(rpc) => {
            let term = rpc.vote.leader_id().term;
            let mut prev = rpc.prev_log_id;
            if prev.is_some_and(|p| p.leader_id.term > term) {
                return Err("prev_log_id is from a term after the leader's".into());
            }
            for entry in &rpc.entries {
                let id = entry.get_log_id();
                let expected = prev.map_or(0, |p| p.index + 1);
                if id.index != expected {
                    return Err(format!("entry {} where {expected} should follow", id.index));
                }
                if prev.is_some_and(|p| p.leader_id.term > id.leader_id.term)
                    || id.leader_id.term > term
                {
                    return Err(format!("entry {} has an impossible term", id.index));
                }
                prev = Some(*id);
            }
            Ok(())
        }
        RequestBody::Vote(rpc) => {
            if rpc
                .last_log_id
                .is_some_and(|l| l.leader_id.term > rpc.vote.leader_id().term)
            {
                return Err("a candidate's last log is from a term after its vote".into());
            }
            Ok(())
        }
        RequestBody::InstallSnapshot(rpc) => {
            if rpc
                .meta
                .last_log_id
                .is_some_and(|l| l.leader_id.term > rpc.vote.leader_id().term)
            {
                return Err("a snapshot from a term after the leader's vote".into());
            }
            Ok(())
        }
    }
}

/// Makes openraft's per-target clients over the [`Transport`].
pub(crate) struct NetworkFactory {
    pub(crate) transport: Arc<dyn Transport>,
    /// Addresses from the configuration; they win over those in the membership, which were
    /// recorded when the cluster was first initialized.
    pub(crate) voters: BTreeMap<NodeId, String>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Network {
        Network {
            target,
            address: self
                .voters
                .get(&target)
                .cloned()
                .unwrap_or_else(|| node.addr.clone()),
            transport: self.transport.clone(),
        }
    }
}

/// openraft's client for one target voter.
pub(crate) struct Network {
    target: NodeId,
    address: String,
    transport: Arc<dyn Transport>,
}

/// Why an RPC did not produce an answer from the target's raft.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("transport")]
    Transport(#[source] TransportError),
    #[error("the peer refused the request: {0}")]
    Refused(String),
    #[error("undecodable response: {0}")]
    Undecodable(String),
    #[error("a response of the wrong kind")]
    WrongKind,
    #[error("no response within {0:?}")]
    Timeout(std::time::Duration),
}

impl<E: std::error::Error> From<CallError> for RPCError<NodeId, BasicNode, E> {
    fn from(e: CallError) -> Self {
        match &e {
            // A peer that refuses or cannot be understood will most likely do so again:
            // Unreachable makes openraft back off instead of retrying in a tight loop.
            CallError::Transport(TransportError::Unreachable(_))
            | CallError::Refused(_)
            | CallError::Undecodable(_) => RPCError::Unreachable(Unreachable::new(&e)),
            _ => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

impl Network {
    async fn call(&self, body: RequestBody, option: &RPCOption) -> Result<Response, CallError> {
        let request = encode(&Request {
            to: self.target,
            body,
        });
        let send = self.transport.send(self.target, &self.address, request);
        let ttl = option.hard_ttl();
        let bytes = match tokio::time::timeout(ttl, send).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => return Err(CallError::Transport(e)),
            Err(_) => return Err(CallError::Timeout(ttl)),
        };
        match decode::<Response>(&bytes).map_err(CallError::Undecodable)? {
            Response::Refused(why) => Err(CallError::Refused(why)),
            response => Ok(response),
        }
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RequestBody::AppendEntries(rpc), &option).await? {
            Response::AppendEntries(Ok(r)) => Ok(r),
            Response::AppendEntries(Err(e)) => Err(RemoteError::new(self.target, e).into()),
            _ => Err(CallError::WrongKind.into()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .call(RequestBody::InstallSnapshot(rpc), &option)
            .await?
        {
            Response::InstallSnapshot(Ok(r)) => Ok(r),
            Response::InstallSnapshot(Err(e)) => Err(RemoteError::new(self.target, e).into()),
            _ => Err(CallError::WrongKind.into()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RequestBody::Vote(rpc), &option).await? {
            Response::Vote(Ok(r)) => Ok(r),
            Response::Vote(Err(e)) => Err(RemoteError::new(self.target, e).into()),
            _ => Err(CallError::WrongKind.into()),
        }
    }
}
