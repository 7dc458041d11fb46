//! The Syncd lock service: the [`syncd_lock_table`] state machine replicated by openraft.
//!
//! - [`clock`]: the stamps the leader puts on log entries, which advance with the monotonic clock.
//! - [`types`]: the openraft type configuration and the log entry payload (a command stamped with the leader's time).
//! - [`log_store`]: the durable raft log (redb, fsync before acknowledging).
//! - [`state_machine`]: the lock table as the raft state machine, with durable snapshots.
//! - [`network`]: raft RPCs to peers over HTTP (client side).
//! - [`peer_api`]: the `/internal/...` routes peers call (server side).
//! - [`service`]: the lock operations any node accepts: forwarding to the leader, linearizable reads, waiting
//!   acquires, the lease ticker, bootstrap and leadership hand-over.
//! - [`error`]: [`LockError`] and its API codes.

pub mod clock;
pub mod error;
pub mod log_store;
pub mod network;
pub mod peer_api;
pub mod service;
pub mod state_machine;
pub mod types;

pub use error::LockError;
pub use service::{LockConfig, LockService};
