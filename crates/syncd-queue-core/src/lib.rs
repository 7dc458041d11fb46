//! The Syncd queue shard core: a pure, deterministic delivery state machine for one queue shard.
//!
//! A shard holds one queue `q` and its dead-letter queue `q.dlq`: two [`Lane`]s. Its replicated log is a sequence of
//! [`Record`]s, each at a log sequence number (lsn) assigned by the shard's owner. The crate does no I/O, reads no
//! clock and uses no randomness: the owner *plans* an operation with the time of its own clock
//! ([`ShardState::plan_receive`], [`ShardState::check_receipts`]), appends the resulting records, and every replica
//! [applies](ShardState::apply) the same records in the same order, so every replica ends in the same state.
//!
//! - [`receipt`]: the receipt of one delivery and its text form `"<id>-<delivery>"`.
//! - [`record`]: the log records, snapshots, and their log payload encoding ([`encode`], [`decode`]).
//! - [`state`]: the shard state: messages, per-lane ready and in-flight indexes, planning and queries.
//!
//! Delivery model (at-least-once, SQS-like):
//! - a message's id is the lsn of its `Enqueue` record; first deliveries happen in id order;
//! - a delivery makes a message invisible until a deadline; an expired message is delivered again, and takes its
//!   place in line at its id position; each delivery has a new receipt and the old one stops working;
//! - an ack with the current receipt removes the message; a nack with it makes the message ready again at once;
//! - on the main lane, a message delivered `max_attempts` times that comes back is moved to the dead lane instead,
//!   with its attempts reset to 0.
//!
//! Guarantees (property-tested in `tests/properties.rs`): a replica that replays the owner's log (or restores a
//! snapshot midway) equals the owner after every record; the live messages are exactly those enqueued and not acked;
//! a message is in exactly one lane and either ready or in flight; an acked message is never delivered again; first
//! deliveries on the main lane happen in id order; replaying only the records at or after
//! [`ShardState::min_live_id`] gives the same state.

pub mod receipt;
pub mod record;
pub mod state;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use receipt::{ParseReceiptError, Receipt};
pub use record::{DecodeError, Dedup, Record, Snapshot, StoredMessage, decode, encode};
pub use state::{Delivered, ShardState};

/// How long a produce's deduplication key is remembered: a produce with the same key within this window (by the
/// leaders' wall clocks) stores nothing and answers the first message's id. Five minutes, as SQS FIFO queues.
pub const DEDUP_WINDOW_MS: u64 = 5 * 60 * 1000;

/// A message id: the lsn of the message's `Enqueue` record.
pub type MessageId = u64;

/// One of the two queues of a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// The queue itself (`q`).
    Main,
    /// Its dead-letter queue (`q.dlq`): messages that reached the main lane's maximum number of attempts.
    Dead,
}
