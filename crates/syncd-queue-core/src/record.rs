//! The shard's log records, snapshots, and their payload encoding.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Lane, MessageId, Receipt};

/// One record of a shard's replicated log. Its lsn is assigned by the owner and passed to
/// [`ShardState::apply`](crate::ShardState::apply) next to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// A new owner term began (no state change; the service layer uses it).
    Term,
    /// One message on the main lane; its id is this record's lsn.
    Enqueue {
        /// The payload.
        body: String,
        /// The producer's deduplication key and the leader's clock when it wrote the record (absent in records
        /// written without a key, and in every record older than the feature).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dedup: Option<Dedup>,
    },
    /// Deliver these messages of `lane` (from ready, or from in-flight whose visibility expired): each gets
    /// attempts += 1, delivery = this lsn, visible again at `deadline_ms`.
    Deliver {
        /// The lane of the messages.
        lane: Lane,
        /// The messages, in the order they are answered.
        ids: Vec<MessageId>,
        /// When they become visible again unless acked or nacked first.
        deadline_ms: u64,
    },
    /// Remove these deliveries' messages (only if the receipt is still the message's current delivery).
    Ack {
        /// The lane of the messages.
        lane: Lane,
        /// The deliveries acknowledged.
        receipts: Vec<Receipt>,
    },
    /// Make these deliveries' messages ready again now (nack). Attempts are kept.
    Requeue {
        /// The lane of the messages.
        lane: Lane,
        /// The deliveries given back.
        receipts: Vec<Receipt>,
    },
    /// Move these main-lane messages (which reached max attempts) to the dead lane, ready, attempts reset to 0.
    DeadLetter {
        /// The messages.
        ids: Vec<MessageId>,
    },
    /// Replace the whole state (used to catch up a replica whose missing records were purged).
    Snapshot(Snapshot),
}

/// A produce's deduplication key (see [`crate::DEDUP_WINDOW_MS`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dedup {
    /// The producer's key.
    pub key: String,
    /// The leader's wall clock when it wrote the record, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// The whole state of a shard: every live message, in id order, and the deduplication keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The live messages, in id order.
    pub messages: Vec<StoredMessage>,
    /// Deduplication keys still in their window: `(key, message id, at_ms)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dedup: Vec<(String, MessageId, u64)>,
}

/// One live message as a snapshot holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// The message id (the lsn of its `Enqueue` record).
    pub id: MessageId,
    /// The lane it is in.
    pub lane: Lane,
    /// The body.
    pub body: String,
    /// Deliveries in this lane so far (reset to 0 when dead-lettered).
    pub attempts: u32,
    /// `(delivery lsn, deadline_ms)` of its current delivery when in flight (its visibility may have expired), or
    /// `None` when ready (never delivered in this lane, or nacked).
    pub delivery: Option<(u64, u64)>,
}

/// The first byte of every encoded record: the payload format version.
pub const FORMAT_VERSION: u8 = 1;

/// Encodes a record as a log payload: the [`FORMAT_VERSION`] byte, then the record as JSON.
pub fn encode(record: &Record) -> Vec<u8> {
    let mut bytes = vec![FORMAT_VERSION];
    // Serializing these types into a Vec cannot fail (no maps, no fallible Serialize impls, no I/O). Were it ever
    // to, the payload is cut back to the bare version byte, which `decode` rejects: an error, never another record.
    if serde_json::to_writer(&mut bytes, record).is_err() {
        bytes.truncate(1);
    }
    bytes
}

/// Decodes a log payload made by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let (&version, payload) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    serde_json::from_slice(payload).map_err(DecodeError::Malformed)
}

/// Why a log payload is not a record.
#[derive(Debug)]
pub enum DecodeError {
    /// The payload is empty.
    Empty,
    /// The payload's format version is not one this build reads.
    UnsupportedVersion(u8),
    /// The payload is not a valid record of its version.
    Malformed(serde_json::Error),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty queue record"),
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "unsupported queue record format version {v}")
            }
            DecodeError::Malformed(e) => write!(f, "malformed queue record: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::Malformed(e) => Some(e),
            DecodeError::Empty | DecodeError::UnsupportedVersion(_) => None,
        }
    }
}
