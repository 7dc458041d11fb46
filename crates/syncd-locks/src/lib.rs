//! The Syncd lock service: the [`syncd_lock_table`] state machine replicated by openraft.
//!
//! - [`clock`]: the stamps the leader puts on log entries, which advance with the monotonic clock.
//! - [`types`]: the openraft type configuration and the log entry payload (a command stamped with the leader's time).
//! - [`log_store`]: the durable raft log (redb, fsync before acknowledging).
//! - [`state_machine`]: the lock table as the raft state machine, with durable snapshots.
//! - [`network`]: raft RPCs to peers over HTTP (client side).
//! - [`peer_api`]: the `/internal/...` routes peers call (server side).
//! - [`service`]: the lock operations any node accepts, split by job: running calls on the leader (forwarding),
//!   linearizable reads, waiting acquires, the lease ticker, rejoining after a disk loss, leadership hand-over.
//! - [`convert`]: the edge between the REST types and the lock table's domain types.
//! - [`error`]: [`LockError`] and its API codes.

pub mod clock;
pub mod convert;
pub mod error;
pub mod log_store;
pub mod network;
pub mod peer_api;
pub mod service;
pub mod state_machine;
pub mod types;

pub use error::LockError;
pub use service::{LockConfig, LockService};
