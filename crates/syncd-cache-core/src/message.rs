//! What peers say to a key's home and what the home says back: requests, replies, probes and probe answers.
//!
//! Every message is about one key; the runtime adds the key, the sender's node id and incarnation, and the
//! membership epoch. Grants and probes are numbered by the home's transaction counter ([`Txn`]), which is how a
//! peer tells a probe about an old copy from a probe about a copy still on its way.

use serde::{Deserialize, Serialize};

/// A node id.
pub type NodeId = u64;

/// A transaction number, issued by a home and increasing for as long as that home process lives.
///
/// A grant carries the number of the transaction that issued it; a probe carries the number of the transaction it
/// serves and the grant it targets.
pub type Txn = u64;

/// A peer's copy of a key, as MESI names it. `I` means no usable copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LineState {
    /// Modified: the only copy, newer than the home's.
    M,
    /// Exclusive: the only copy, equal to the home's; may become `M` without asking.
    E,
    /// Shared: one of possibly several read-only copies.
    S,
    /// Invalid: no copy.
    I,
}

impl LineState {
    /// The one-letter name used in `X-Cache-State` and `/state`.
    pub fn as_str(self) -> &'static str {
        match self {
            LineState::M => "M",
            LineState::E => "E",
            LineState::S => "S",
            LineState::I => "I",
        }
    }
}

/// A peer's request to a key's home. The home runs one at a time per key, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Request<V> {
    /// A read miss: send the value and a copy (`E` if nobody else holds one, else `S`).
    Read,
    /// A write (`Some`) or a delete (`None`): invalidate every other copy, then take the value. A write is granted an
    /// `M` copy (`E` when writing through); a delete leaves no copy anywhere.
    Write {
        /// The new value, or `None` to delete.
        value: Option<V>,
    },
    /// An evicted `M` line's write-back (`value` is `Some`), or an evicted clean line's notice (`None`).
    WriteBack {
        /// The grant the line was held under; a write-back for any other grant is stale and ignored.
        grant: Txn,
        /// The dirty value, if any.
        value: Option<V>,
    },
}

/// The home's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Reply<V> {
    /// The answer to a read. `value: None` means the key has no value (nothing is granted).
    Fill {
        /// The transaction that issued this copy.
        grant: Txn,
        /// `E` or `S`.
        state: LineState,
        /// The value.
        value: Option<V>,
    },
    /// The answer to a write: the value is in place and every other copy is gone.
    Granted {
        /// The transaction that issued this copy.
        grant: Txn,
        /// `M`, or `E` when writing through.
        state: LineState,
    },
    /// The answer to a delete: the key has no value and no copies.
    Deleted {
        /// The transaction that deleted it.
        txn: Txn,
    },
    /// The answer to a write-back (applied or stale, the peer drops the line either way).
    WrittenBack,
    /// The request came from an earlier incarnation of its sender than one the home already knows: ignored.
    Stale,
}

/// What the home wants done with a copy it granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProbeKind {
    /// Drop the copy (a write is coming).
    Invalidate,
    /// Keep a shared copy and send the value (a reader is coming).
    Downgrade,
}

/// The home's question to a peer about one of its copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Probe {
    /// The transaction this probe serves.
    pub txn: Txn,
    /// The grant the home believes the peer holds.
    pub target: Txn,
    /// What to do with it.
    pub kind: ProbeKind,
}

/// A peer's answer to a [`Probe`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProbeAnswer<V> {
    /// The peer holds no copy under the target grant (any more, or not yet: a copy still on its way will not be
    /// installed).
    NotHeld,
    /// The peer held the targeted copy; for a shared copy or an invalidated one the value is not needed.
    Dropped,
    /// The peer held the targeted exclusive copy: here is its value. `dirty` says it was `M`; `kept` says the peer
    /// keeps an `S` copy.
    Data {
        /// The line's value.
        value: V,
        /// Whether the line was Modified.
        dirty: bool,
        /// Whether the peer keeps a shared copy.
        kept: bool,
    },
}

/// Settings every peer of a cluster shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Writes always go to the home, which keeps the newest value: a crashed peer loses nothing, at the cost of a
    /// round trip per write. Without it an `M` line's silent writes live only at its holder until written back.
    pub write_through: bool,
}
