//! The commands the lock table applies (one per raft log entry) and what each one answers.

use crate::mode::LockMode;
use serde::{Deserialize, Serialize};

/// A change to the lock table. The time comes separately, from the log entry's stamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Grant the lock, or queue for it when `wait_ms > 0`.
    Acquire {
        /// Lock name.
        name: String,
        /// Requester.
        owner: String,
        /// Requested mode.
        mode: LockMode,
        /// Lease length from the moment of the grant.
        ttl_ms: u64,
        /// How long the request may wait in the queue; 0 means "now or never".
        wait_ms: u64,
        /// Names this request (0: unnamed, as in logs written before requests had ids), so that a later
        /// [`Command::CancelWait`] can withdraw exactly what it queued or was granted.
        #[serde(default, skip_serializing_if = "is_zero")]
        request: u64,
    },
    /// Give the lock up.
    Release {
        /// Lock name.
        name: String,
        /// Holder.
        owner: String,
        /// Refuse unless this is the holder's token.
        token: Option<u64>,
    },
    /// Extend the holder's lease to `now + ttl_ms`.
    Renew {
        /// Lock name.
        name: String,
        /// Holder.
        owner: String,
        /// New lease length from now.
        ttl_ms: u64,
        /// Refuse unless this is the holder's token.
        token: Option<u64>,
    },
    /// Remove the owner from the lock's queue (its wait timed out at the client, or the client went away).
    ///
    /// With a `request` id, withdraw that request whatever became of it: its queued wait, or the grant it was
    /// given meanwhile (nobody is there to use it), unless a later acquire by the owner took the grant over.
    CancelWait {
        /// Lock name.
        name: String,
        /// Waiter.
        owner: String,
        /// The request to withdraw; 0 removes the owner's queued wait only.
        #[serde(default, skip_serializing_if = "is_zero")]
        request: u64,
    },
    /// Only advance the clock, expiring due leases and waits.
    Tick,
    /// A node announces the incarnation of its storage (a random number made when its data directory was created).
    /// A known node with a new incarnation has lost its disk: it must rejoin raft as a new member.
    RegisterNode {
        /// Node id.
        id: u64,
        /// The incarnation of its storage.
        incarnation: u64,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Command {
    /// The lock this command touches, if any.
    pub fn lock_name(&self) -> Option<&str> {
        match self {
            Command::Acquire { name, .. }
            | Command::Release { name, .. }
            | Command::Renew { name, .. }
            | Command::CancelWait { name, .. } => Some(name),
            Command::Tick | Command::RegisterNode { .. } => None,
        }
    }
}

/// The answer to one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The owner holds the lock.
    Granted {
        /// The mode held.
        mode: LockMode,
        /// Fencing token of this hold.
        token: u64,
        /// End of the lease.
        expires_at_ms: u64,
    },
    /// The request is queued until `deadline_ms`.
    Waiting {
        /// When the wait ends if not granted before.
        deadline_ms: u64,
    },
    /// Not grantable now and the request may not wait (or the owner already waits in another mode).
    Conflict,
    /// Waiting would close a cycle in the wait-for graph; nothing changed.
    Deadlock,
    /// The hold is gone.
    Released,
    /// The lease was extended.
    Renewed {
        /// New end of the lease.
        expires_at_ms: u64,
    },
    /// The owner does not hold the lock.
    NotHeld,
    /// The given token is not the one the owner holds.
    StaleToken,
    /// The waiter was removed (`removed`), or was not waiting.
    WaitCancelled {
        /// Whether a queued request was removed.
        removed: bool,
    },
    /// The clock moved.
    Ticked,
    /// The node's incarnation is recorded; `previous` is the one recorded before, if any.
    Registered {
        /// The incarnation recorded before this command.
        previous: Option<u64>,
    },
}
