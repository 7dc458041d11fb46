//! The body of `GET /v1/status`.

use serde::{Deserialize, Serialize};

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node id.
    pub id: u64,
    /// The roles it runs: `lock`, `queue`, `cache`.
    pub roles: Vec<String>,
    /// The `syncd` version.
    pub version: String,
    /// The lock role, when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locks: Option<LockRoleStatus>,
    /// The queue role, when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<QueueRoleStatus>,
    /// The cache role, when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheRoleStatus>,
}

/// The membership view of the cache role on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRoleStatus {
    /// Local sequence number of the current view (it changes whenever a peer joins or leaves).
    pub epoch: u64,
    /// Fingerprint of the view (the same on every peer that agrees on the live peers).
    pub view: String,
    /// Live cache peers, this node included.
    pub peers: Vec<u64>,
    /// Whether the start-up grace period has passed (the node answers as a home).
    pub ready: bool,
}

/// The ring view of the queue role on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRoleStatus {
    /// Ring membership epoch (0 before the ring is formed).
    pub epoch: u64,
    /// Ring members.
    pub members: Vec<u64>,
    /// Members this node hears from.
    pub alive: Vec<u64>,
    /// Shards not yet settled on the current ring.
    pub pending_handoffs: usize,
}

/// The raft view of the lock role on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRoleStatus {
    /// `leader`, `follower`, `candidate` , `learner` or `shutdown`.
    pub state: String,
    /// The leader's node id, if one is known.
    pub leader: Option<u64>,
    /// The current raft term.
    pub term: u64,
    /// Voting members of the group.
    pub members: Vec<u64>,
    /// Non-voting members (catching up).
    #[serde(default)]
    pub learners: Vec<u64>,
    /// The last log index this node has applied.
    #[serde(default)]
    pub applied_index: Option<u64>,
}
