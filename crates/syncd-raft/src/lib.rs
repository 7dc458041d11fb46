//! A Syncd raft group: one replicated state machine on openraft, the machinery the lock service and the queue
//! control group share.
//!
//! - [`machine`]: the [`Machine`] trait a replicated state machine implements (apply a stamped command, snapshot).
//! - [`types`]: the openraft type configuration of a group of machine `M`, and the stamped log entry payload.
//! - [`clock`]: the stamps the leader puts on log entries, which advance with the monotonic clock.
//! - [`log_store`]: the durable raft log (redb, fsync before acknowledging), with the storage incarnation and the
//!   vote and rejoin markers.
//! - [`state_machine`]: the machine as openraft's state machine, with durable snapshots.
//! - [`network`]: raft RPCs to peers over HTTP (client side), under a group's path prefix.
//! - [`routes`]: the peer routes of a group (server side).
//! - [`group`]: the group a service talks to, split by job: start and status, running calls on the leader
//!   (forwarding), linearizable reads, rejoining after a disk loss, leadership hand-over.
//!
//! A process may run several groups (a node with the lock and the queue roles runs two): each has its own data
//! directory and its own path prefix ([`Paths`]).

pub mod clock;
pub mod group;
pub mod log_store;
pub mod machine;
pub mod network;
pub mod routes;
pub mod state_machine;
pub mod testing;
pub mod types;

pub use group::{Group, GroupConfig, GroupError, LeaderReply, MembershipChange, Written};
pub use machine::Machine;
pub use network::Paths;
pub use types::{NodeId, Stamped, Types};
