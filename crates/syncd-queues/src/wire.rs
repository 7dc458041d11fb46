//! Bodies of the peer endpoints (`/internal/queues/...`): replication, takeover, forwarding and liveness.
//!
//! A log position is `(lsn, term)`; `(0, 0)` is the position before the first entry.

use serde::{Deserialize, Serialize};
use syncd_api::queues::{QueueInfo, ReceiveRequest, ReceivedMessage};
use syncd_queue_core::{Record, Snapshot};

/// Paths of the peer endpoints, shared by the client side ([`crate::peers`]) and the server side
/// ([`crate::peer_api`]).
pub mod paths {
    /// Liveness and ring gossip.
    pub const PING: &str = "/internal/queues/ping";
    /// The owner's replication stream to a replica.
    pub const APPEND: &str = "/internal/queues/append";
    /// A would-be owner asks a copy holder to promise a new term and describe its log.
    pub const PREPARE: &str = "/internal/queues/prepare";
    /// A would-be owner (or a lagging copy) reads entries from a copy holder.
    pub const FETCH: &str = "/internal/queues/fetch";
    /// Any node forwards a client operation to the acting owner.
    pub const OP: &str = "/internal/queues/op";
    /// Ask a node to become the acting owner of a shard now (ring hand-off).
    pub const TAKE_OVER: &str = "/internal/queues/take-over";
    /// Shards a node stores.
    pub const SHARDS: &str = "/internal/queues/shards";
    /// The next ring membership (operator, scripts, tests): any node, which then spreads it.
    pub const RING: &str = "/internal/ring";
    /// Where a node spreads an adopted ring.
    pub const RING_ADOPT: &str = "/internal/ring/adopt";
}

/// One log entry on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireEntry {
    /// Log sequence number.
    pub lsn: u64,
    /// Owner term that wrote it.
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
    /// Whether the holder knows it has every acknowledged entry (the owner counted it as in sync, or it is the owner).
    pub synced: bool,
    /// Whether it holds the shard at all.
    pub exists: bool,
}

/// The owner's replication call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppendRequest {
    /// Shard (base queue name).
    pub shard: String,
    /// The owner's node id.
    pub from: u64,
    /// The owner's term.
    pub term: u64,
    /// The entry right before `entries` (or before the snapshot).
    pub prev: Position,
    /// Entries to append after `prev`.
    pub entries: Vec<WireEntry>,
    /// Replace everything with this snapshot at `prev` first (the entries the replica needs were purged).
    pub snapshot: Option<Snapshot>,
    /// Whether the owner counts this replica as in sync (its 201s wait for it).
    pub in_sync: bool,
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
    /// A newer owner exists: the caller must step down.
    Stale {
        /// The highest term the replica has promised.
        promised: u64,
    },
}

/// A would-be owner's promise request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareRequest {
    /// Shard.
    pub shard: String,
    /// Would-be owner.
    pub from: u64,
    /// The term it will own in.
    pub term: u64,
}

/// Answer to a prepare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum PrepareResponse {
    /// Promised: nothing from an older term is accepted any more.
    Promised {
        /// The holder's log.
        summary: LogSummary,
    },
    /// Already promised `promised` >= the asked term.
    Rejected {
        /// The highest term promised.
        promised: u64,
    },
}

/// Read entries from a copy holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    /// Shard.
    pub shard: String,
    /// First lsn wanted.
    pub from: u64,
    /// Stop after about this many bytes.
    pub max_bytes: usize,
}

/// Entries, or a snapshot when `from` was purged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchResponse {
    /// The state at `snapshot_at` replaces everything before the entries.
    pub snapshot: Option<(Position, Snapshot)>,
    /// Entries from `from` (or after the snapshot), ascending.
    pub entries: Vec<WireEntry>,
    /// The holder's last entry.
    pub last: Position,
}

/// A client operation, forwarded to the acting owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Op {
    /// Produce messages.
    Produce {
        /// Bodies.
        bodies: Vec<String>,
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

/// Ask a node to take a shard over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeOverRequest {
    /// Shard.
    pub shard: String,
    /// The ring epoch the caller acts on.
    pub epoch: u64,
}

/// The ring as nodes exchange it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingState {
    /// Membership epoch.
    pub epoch: u64,
    /// Member ids.
    pub members: Vec<u64>,
    /// Virtual nodes per member.
    pub vnodes: u32,
    /// Addresses of members not in the static peer list (static mode only).
    #[serde(default)]
    pub addrs: std::collections::BTreeMap<u64, String>,
    /// The previous membership, kept so a new owner also asks the old copy holders for data.
    #[serde(default)]
    pub previous: Vec<u64>,
}

/// A ping answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingResponse {
    /// The answering node.
    pub id: u64,
    /// Its ring, if formed.
    pub ring: Option<RingState>,
}

/// Shards a node stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardList {
    /// Names.
    pub shards: Vec<String>,
}
