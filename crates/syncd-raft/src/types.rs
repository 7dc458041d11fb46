//! The openraft type configuration of a group and the payload of its log entries.

use std::cmp::Ordering;
use std::fmt;
use std::io::Cursor;
use std::marker::PhantomData;

use openraft::BasicNode;
use serde::{Deserialize, Serialize};

use crate::machine::Machine;

/// A node id: the StatefulSet ordinal in Kubernetes, `--id` elsewhere.
pub type NodeId = u64;

/// One command with the time the leader proposed it. The stamp is what makes time-based decisions
/// deterministic: replicas read the time from the log, never from their own clocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped<C> {
    /// Milliseconds since the Unix epoch on the proposing leader's stamp clock.
    pub now_ms: u64,
    /// The command.
    pub command: C,
}

/// The raft types of a group of machine `M`.
pub struct Types<M>(PhantomData<fn() -> M>);

impl<M> Clone for Types<M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M> Copy for Types<M> {}
impl<M> Default for Types<M> {
    fn default() -> Self {
        Types(PhantomData)
    }
}
impl<M> fmt::Debug for Types<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Types")
    }
}
impl<M> PartialEq for Types<M> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<M> Eq for Types<M> {}
impl<M> PartialOrd for Types<M> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<M> Ord for Types<M> {
    fn cmp(&self, _: &Self) -> Ordering {
        Ordering::Equal
    }
}

impl<M: Machine> openraft::RaftTypeConfig for Types<M> {
    type D = Stamped<M::Command>;
    type R = Option<M::Outcome>;
    type NodeId = NodeId;
    type Node = BasicNode;
    type Entry = openraft::Entry<Self>;
    type SnapshotData = Cursor<Vec<u8>>;
    type AsyncRuntime = openraft::TokioRuntime;
    type Responder = openraft::impls::OneshotResponder<Self>;
}

/// A group's raft handle.
pub type Raft<M> = openraft::Raft<Types<M>>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// A log entry of a group of machine `M`.
pub type Entry<M> = openraft::Entry<Types<M>>;
/// A storage error.
pub type StorageError = openraft::StorageError<NodeId>;
/// Membership as stored with the state machine.
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
