//! The Syncd queue role: durable work queues, placed on nodes by a consistent-hash ring, replicated, delivered at
//! least once. Who leads each shard, in which epoch, and which copies are in sync is decided by the queue control
//! group; the rules are `syncd-queue-engine`'s.
//!
//! - [`control`]: the queue control group (a `syncd-raft` group of the queue nodes) and node sessions.
//! - [`service`]: the role, split by job: client operations, routing, following the control state, ring changes.
//! - [`leading`]: a shard's leader at run time (the leader engine, its streams, the high watermark).
//! - [`shard`]: one shard on one node: its log ([`syncd_queue_log`]), its state ([`syncd_queue_core`]), its role.
//! - [`stream`]: the leader's replication stream to one replica, with catch-up.
//! - [`log_match`]: where two shard logs agree (pure).
//! - [`addrs`]: peer addresses.
//! - [`peers`]: HTTP calls to other nodes; [`peer_api`]: the `/internal/queues/...` routes they call.
//! - [`wire`]: the peer protocol's bodies; [`error`]: [`QueueError`] and its API codes.
//!
//! `docs/queues.md` describes the protocol and its guarantees.

pub mod addrs;
pub mod control;
pub mod error;
pub(crate) mod leading;
pub mod log_match;
pub mod peer_api;
pub mod peers;
pub mod service;
pub(crate) mod shard;
pub(crate) mod stream;
pub mod wire;

pub use addrs::PeerSource;
pub use error::QueueError;
pub use service::{QueueConfig, QueueService};
pub use syncd_queue_log::FsyncPolicy;
