//! Bodies of the peer endpoints (`/internal/queues/...`): replication and forwarding. (The control group's
//! endpoints are [`crate::control`]'s.)
//!
//! A log position is `(lsn, term)`, where the term is the leader epoch that wrote the entry; `(0, 0)` is the
//! position before the first entry.

use serde::{Deserialize, Serialize};
use syncd_api::queues::{QueueInfo, ReceiveRequest, ReceivedMessage};
use syncd_queue_core::{Record, Snapshot};

/// Paths of the peer endpoints, shared by the client side ([`crate::peers`]) and the server side
/// ([`crate::peer_api`]).
pub mod paths {
    /// The leader's replication stream to a replica.
    pub const APPEND: &str = "/internal/queues/append";
    /// Any node forwards a client operation to the shard's leader.
    pub const OP: &str = "/internal/queues/op";
    /// Shards a node stores.
    pub const SHARDS: &str = "/internal/queues/shards";
    /// The next ring membership (operator, scripts, tests): any node, carried out by the control group.
    pub const RING: &str = "/internal/ring";
}

/// One log entry on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireEntry {
    /// Log sequence number.
    pub lsn: u64,
    /// Leader epoch that wrote it.
    pub term: u64,
    /// The record.
    pub record: Record,
}

/// A log position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Position {
    /// Term of the entry (compared first: a later term wins).
    pub term: u64,
    /// Its lsn.
    pub lsn: u64,
}

/// What a copy holder says about its log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LogSummary {
    /// The last entry, `(0, 0)` when empty.
    pub last: Position,
    /// Lowest stored lsn (0 when empty).
    pub first_lsn: u64,
    /// `(first lsn, term)` of each run of entries written in one term, ascending.
    pub terms: Vec<(u64, u64)>,
}

/// The leader's replication call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppendRequest {
    /// Shard (base queue name).
    pub shard: String,
    /// The leader's node id.
    pub from: u64,
    /// The leader's epoch: a replica that knows a newer one refuses.
    pub epoch: u64,
    /// The entry right before `entries` (or before the snapshot).
    pub prev: Position,
    /// Entries to append after `prev`.
    pub entries: Vec<WireEntry>,
    /// Replace everything with this snapshot at `prev` first (the entries the replica needs were purged).
    pub snapshot: Option<Snapshot>,
}

/// A replica's answer to an append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum AppendResponse {
    /// Durable up to `last`.
    Accepted {
        /// Last entry now on the replica.
        last: Position,
    },
    /// `prev` does not match; here is the replica's log.
    Mismatch {
        /// The replica's log.
        summary: LogSummary,
    },
    /// The replica knows a newer epoch: the caller no longer leads.
    Stale {
        /// The newest epoch the replica knows.
        epoch: u64,
    },
}

/// A client operation, forwarded to the shard's leader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Op {
    /// Produce messages.
    Produce {
        /// Bodies.
        bodies: Vec<String>,
        /// Deduplication keys, one per body (empty: none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dedup: Vec<Option<String>>,
    },
    /// Receive.
    Receive {
        /// From the dead-letter lane.
        dead: bool,
        /// The request.
        request: ReceiveRequest,
    },
    /// Ack receipts.
    Ack {
        /// Dead-letter lane.
        dead: bool,
        /// Receipts.
        receipts: Vec<String>,
    },
    /// Nack receipts.
    Nack {
        /// Dead-letter lane.
        dead: bool,
        /// Receipts.
        receipts: Vec<String>,
    },
    /// Describe the queue.
    Info {
        /// Dead-letter lane.
        dead: bool,
    },
}

/// The result of an [`Op`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum OpResult {
    /// Message ids.
    Produced {
        /// Ids in order.
        ids: Vec<String>,
    },
    /// Received messages.
    Received {
        /// Messages.
        messages: Vec<ReceivedMessage>,
    },
    /// Acked count.
    Acked {
        /// Count.
        acked: usize,
    },
    /// Requeued count.
    Requeued {
        /// Count.
        requeued: usize,
    },
    /// Queue description.
    Info(QueueInfo),
}

/// A forwarded operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRequest {
    /// Shard (base queue name).
    pub shard: String,
    /// The operation.
    pub op: Op,
    /// How many nodes forwarded it already (loops end in 503).
    pub hops: u32,
}

/// Shards a node stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardList {
    /// Names.
    pub shards: Vec<String>,
}
