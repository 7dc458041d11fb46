//! The openraft type configuration of the lock group and the payload of its log entries.

use std::io::Cursor;

use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use syncd_lock_table::{Command, Outcome};

/// A node id: the StatefulSet ordinal in Kubernetes, `--id` elsewhere.
pub type NodeId = u64;

/// One lock-table command with the time the leader proposed it. The stamp is what makes lease expiry
/// deterministic: replicas read the time from the log, never from their own clocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped {
    /// Milliseconds since the Unix epoch on the proposing leader's clock.
    pub now_ms: u64,
    /// The command.
    pub command: Command,
}

/// What applying one log entry answered: `None` for blank and membership entries.
pub type Applied = Option<Outcome>;

openraft::declare_raft_types!(
    /// The raft types of the lock group.
    pub TypeConfig:
        D = Stamped,
        R = Applied,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The lock group's raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id of the lock group.
pub type LogId = openraft::LogId<NodeId>;
/// A log entry of the lock group.
pub type Entry = openraft::Entry<TypeConfig>;
/// A storage error of the lock group.
pub type StorageError = openraft::StorageError<NodeId>;
/// Membership as stored with the state machine.
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
