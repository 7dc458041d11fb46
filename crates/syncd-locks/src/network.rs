//! The raft transport, client side: raft RPCs as JSON over HTTP to the peers' `/internal/raft/*` endpoints.
//!
//! The clients come from the shared peer transport (`syncd-peer`): one connection pool per peer address, kept for
//! the life of the process so openraft's reconnects reuse warm connections. A refused or failed connection is reported as `Unreachable`, which
//! makes openraft back off instead of hammering a dead peer.

use std::error::Error;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use syncd_peer::PeerClient;

use crate::types::{NodeId, TypeConfig};

/// Paths of the raft endpoints, shared with [`crate::peer_api`].
pub(crate) mod paths {
    pub const APPEND: &str = "/internal/raft/append";
    pub const VOTE: &str = "/internal/raft/vote";
    pub const SNAPSHOT: &str = "/internal/raft/snapshot";
    pub const ELECT: &str = "/internal/raft/elect";
    /// The pod's preStop hook (an HTTP GET): hand leadership over before the container is stopped.
    pub const HAND_OVER: &str = "/internal/locks/hand-over";
    pub const WRITE: &str = "/internal/locks/write";
    pub const READ_INDEX: &str = "/internal/locks/read-index";
    /// The operator's entry point: any node, forwarded to the leader.
    pub const MEMBERSHIP: &str = "/internal/locks/membership";
    /// Where followers forward a membership change: the leader only.
    pub const MEMBERSHIP_ON_LEADER: &str = "/internal/locks/membership/on-leader";
}

/// Builds one [`PeerConnection`] per raft target.
#[derive(Debug, Clone, Default)]
pub struct PeerNetwork {
    clients: PeerClient,
}

impl PeerNetwork {
    /// A network that draws its HTTP clients from `clients`.
    pub fn new(clients: PeerClient) -> Self {
        PeerNetwork { clients }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerConnection {
            target,
            base: self.clients.url(&node.addr, ""),
            client: self.clients.http(&node.addr),
        }
    }
}

/// The raft RPC client for one peer.
#[derive(Debug)]
pub struct PeerConnection {
    target: NodeId,
    base: String,
    client: reqwest::Client,
}

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let response = self
            .client
            .post(format!("{}{}", self.base, path))
            .timeout(option.hard_ttl())
            .json(req)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        if !response.status().is_success() {
            let err = UnexpectedStatus(response.status().as_u16());
            return Err(RPCError::Network(NetworkError::new(&err)));
        }
        let body: Result<Resp, RaftError<NodeId, E>> = response
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        body.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("peer answered HTTP {0}")]
struct UnexpectedStatus(u16);

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(paths::APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(paths::SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(paths::VOTE, &rpc, &option).await
    }
}
