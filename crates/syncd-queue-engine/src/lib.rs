//! The queue role's replication rules as pure state machines (events in, decisions out), with no I/O, clock or
//! task of their own, so they can be unit-tested per event and model-checked (`tests/model.rs`).
//!
//! - [`control`]: the control state the queue control group replicates, as Kafka's KRaft controller keeps it:
//!   the ring, every node's incarnation and fencing, and per shard its placement, replicas, leader, leader epoch
//!   and in-sync set. Every change is a [`control::ControlCommand`] applied in log order.
//! - [`leader`]: what a shard leader decides: which copies an acknowledgement waits for, when a write is
//!   acknowledged (the high watermark), when to ask the control group to shrink or expand the in-sync set.
//!
//! The rules, and why each keeps acknowledged data:
//! 1. Only the leader the control group named for an epoch writes in that epoch, and only once its node's current
//!    incarnation is registered. Replicas refuse appends of an epoch older than the newest they know.
//! 2. A write is acknowledged once every member of the leader's *acknowledgement set* has it durably: the
//!    committed in-sync set plus any member whose addition the leader proposed. So the committed in-sync set is
//!    always a subset of every acknowledgement set, and every in-sync member holds every acknowledged write.
//! 3. The leader stops waiting for a replica only after the control group committed its removal.
//! 4. Only in-sync members become leader; with none left alive the shard waits (no unclean election).
//! 5. A restarted node starts a new epoch for the shards it led: what it had not fsynced may be on a replica
//!    under the old epoch, and the new epoch makes the replicas drop it rather than mix it with new writes.
//! 6. A restarted copy reads the control state linearizably before it accepts appends, and refuses epochs older
//!    than that state's (or its log's last entry's). A leader's epoch marker may not be durable when it crashes,
//!    so its log alone may not show the epoch it led; the model check found the acknowledged write a deposed
//!    leader could otherwise complete through it.
//!
//! `docs/queues.md` describes the whole protocol; `docs/architecture.md` where this crate sits.

pub mod control;
pub mod leader;

/// A node id: the StatefulSet ordinal in Kubernetes, `--id` elsewhere.
pub type NodeId = u64;

/// A leader epoch: which leader of a shard wrote an entry. Every leader change (and every restart of a leader)
/// starts a new one.
pub type Epoch = u64;
