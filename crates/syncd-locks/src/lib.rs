//! The Syncd lock service: the [`syncd_lock_table`] state machine replicated by openraft.
//!
//! - [`types`]: the openraft type configuration and the log entry payload (a command stamped with the leader's time).
//! - [`log_store`]: the durable raft log (redb, fsync before acknowledging).
//! - [`state_machine`]: the lock table as the raft state machine, with durable snapshots.
pub mod log_store;
pub mod state_machine;
pub mod types;
