//! The raft transport, client side: raft RPCs as JSON over HTTP to the peers' raft endpoints ([`Paths`]).
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

use std::marker::PhantomData;
use std::sync::Arc;

use crate::machine::Machine;
use crate::types::{NodeId, Types};

/// The endpoints of one group. Two groups in one process (the lock group and the queue control group) differ
/// by their prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Raft's append-entries RPC.
    pub append: String,
    /// Raft's vote RPC.
    pub vote: String,
    /// Raft's install-snapshot RPC.
    pub snapshot: String,
    /// Campaign now (the old leader asks its successor during a hand-over).
    pub elect: String,
    /// The pod's preStop hook (an HTTP GET): hand leadership over before the container is stopped.
    pub hand_over: String,
    /// Where followers forward a write: the leader only.
    pub write: String,
    /// Where followers ask for a read index: the leader only.
    pub read_index: String,
    /// The operator's entry point for membership changes: any node, forwarded to the leader.
    pub membership: String,
    /// Where followers forward a membership change: the leader only.
    pub membership_on_leader: String,
}

impl Paths {
    /// The endpoints of a group whose raft RPCs live under `raft` and whose own calls under `group`.
    pub fn new(raft: &str, group: &str) -> Paths {
        Paths {
            append: format!("{raft}/append"),
            vote: format!("{raft}/vote"),
            snapshot: format!("{raft}/snapshot"),
            elect: format!("{raft}/elect"),
            hand_over: format!("{group}/hand-over"),
            write: format!("{group}/write"),
            read_index: format!("{group}/read-index"),
            membership: format!("{group}/membership"),
            membership_on_leader: format!("{group}/membership/on-leader"),
        }
    }
}

/// Builds one [`PeerConnection`] per raft target.
#[derive(Debug)]
pub struct PeerNetwork<M> {
    clients: PeerClient,
    paths: Arc<Paths>,
    machine: PhantomData<fn() -> M>,
}

impl<M> PeerNetwork<M> {
    /// A network that draws its HTTP clients from `clients` and calls the endpoints `paths`.
    pub fn new(clients: PeerClient, paths: Arc<Paths>) -> Self {
        PeerNetwork {
            clients,
            paths,
            machine: PhantomData,
        }
    }
}

impl<M: Machine> RaftNetworkFactory<Types<M>> for PeerNetwork<M> {
    type Network = PeerConnection<M>;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerConnection {
            target,
            base: self.clients.url(&node.addr, ""),
            client: self.clients.http(&node.addr),
            paths: self.paths.clone(),
            machine: PhantomData,
        }
    }
}

/// The raft RPC client for one peer.
#[derive(Debug)]
pub struct PeerConnection<M> {
    target: NodeId,
    base: String,
    client: reqwest::Client,
    paths: Arc<Paths>,
    machine: PhantomData<fn() -> M>,
}

impl<M> PeerConnection<M> {
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

impl<M: Machine> RaftNetwork<Types<M>> for PeerConnection<M> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Types<M>>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(&self.paths.append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Types<M>>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(&self.paths.snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(&self.paths.vote, &rpc, &option).await
    }
}
