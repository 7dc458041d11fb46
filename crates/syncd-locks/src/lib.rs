//! The Syncd lock service: the [`syncd_lock_table`] state machine replicated by a raft group ([`syncd_raft`]).
//!
//! - [`machine`]: the lock table as the group's replicated machine.
//! - [`peer_api`]: the `/internal/raft/*` and `/internal/locks/*` routes peers and the operator call.
//! - [`service`]: the lock operations any node accepts, split by job: the operations and start, waiting
//!   acquires, the lease ticker.
//! - [`convert`]: the edge between the REST types and the lock table's domain types.
//! - [`error`]: [`LockError`] and its API codes.
//!
//! The raft machinery (durable log, transport, leader forwarding, linearizable reads, rejoin after disk loss,
//! hand-over, the stamp clock) is [`syncd_raft`]'s, shared with the queue control group.

pub mod convert;
pub mod error;
pub mod machine;
pub mod peer_api;
pub mod service;

pub use error::LockError;
pub use service::{LockConfig, LockService, lock_config};
