//! The Syncd MESI protocol core: pure state machines, no I/O, no clocks of their own.
//!
//! Each key has a home node (placed by the ring over live peers) whose directory entry ([`HomeKey`]) holds the
//! backing value, the `E`/`M` owner and the `S` sharers, and runs one transaction per key at a time. Each peer keeps
//! a [`NodeKey`] per key it touches: its copy, its request in flight and its write-back in flight. The runtime
//! (`syncd-cache`) carries [`Request`]s, [`Reply`]s, [`Probe`]s and [`ProbeAnswer`]s between them and supplies the
//! time for leases.
//!
//! Modules:
//! - [`message`]: the messages, [`LineState`] and the cluster [`Policy`];
//! - [`node`]: one key at one peer (read, write, evict; replies and probes);
//! - [`home`]: one key at its home (queueing, probing, granting, losing a silent holder).
//!
//! Guarantees, model-checked with `stateright` in `tests/model.rs` (2-3 peers, 1-2 keys, crashes, reordering):
//! at most one `E`/`M` copy per key; never an `E`/`M` copy beside an `S` copy; a read never returns a value older
//! than the newest write that completed before the read began (a value lost with a crashed holder reads as "not
//! found").

pub mod home;
pub mod message;
pub mod node;

pub use home::{Effect, Holder, Home, HomeKey, Incoming};
pub use message::{LineState, NodeId, Policy, Probe, ProbeAnswer, ProbeKind, Reply, Request, Txn};
pub use node::{Copy, NodeKey, Outcome, ReadStep, WriteStep};
