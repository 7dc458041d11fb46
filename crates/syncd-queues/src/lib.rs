//! The Syncd queue role: durable work queues, placed on nodes by a consistent-hash ring, replicated, delivered at
//! least once.
//!
//! - [`service`]: routing to the acting owner, takeover, hand-off, and the client operations.
//! - [`shard`]: one shard on one node: its log ([`syncd_queue_log`]), its state ([`syncd_queue_core`]), its role.
//! - [`stream`]: the owner's replication stream to one replica, with catch-up.
//! - [`log_match`]: where two shard logs agree (pure).
//! - [`membership`]: the ring (epochs, persisted), peer addresses, liveness.
//! - [`peers`]: HTTP calls to other nodes; [`peer_api`]: the `/internal/queues/...` routes they call.
//! - [`wire`]: the peer protocol's bodies; [`error`]: [`QueueError`] and its API codes.
//!
//! `docs/queues.md` describes the protocol and its guarantees.

pub mod error;
pub mod log_match;
pub mod membership;
pub mod peer_api;
pub mod peers;
pub mod service;
pub(crate) mod shard;
pub(crate) mod stream;
pub mod wire;

pub use error::QueueError;
pub use membership::PeerSource;
pub use service::{QueueConfig, QueueService};
pub use syncd_queue_log::FsyncPolicy;
