//! Errors of the lock service, each with the stable API code it is answered with.

use syncd_api::ErrorCode;

/// Why a lock call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// The lock was not granted within the wait.
    #[error("{0}")]
    Conflict(String),
    /// Waiting would close a cycle in the wait-for graph.
    #[error(
        "waiting for this lock would close a cycle in the wait-for graph; the request was refused"
    )]
    Deadlock,
    /// The owner does not hold the lock.
    #[error("{owner} does not hold {name}")]
    NotHeld {
        /// Lock.
        name: String,
        /// Owner.
        owner: String,
    },
    /// The token given is not the owner's current token.
    #[error("token {given} is not the current token of {owner} on {name}")]
    StaleToken {
        /// Lock.
        name: String,
        /// Owner.
        owner: String,
        /// The token the request carried.
        given: u64,
    },
    /// No leader, no quorum, or shutting down: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected answer: logged, never shown in detail to clients.
    #[error("{0}")]
    Internal(String),
}

impl LockError {
    /// The API code this error is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            LockError::Conflict(_) => ErrorCode::LockConflict,
            LockError::Deadlock => ErrorCode::Deadlock,
            LockError::NotHeld { .. } => ErrorCode::NotHeld,
            LockError::StaleToken { .. } => ErrorCode::StaleToken,
            LockError::Unavailable(_) => ErrorCode::Unavailable,
            LockError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<syncd_raft::GroupError> for LockError {
    fn from(e: syncd_raft::GroupError) -> Self {
        match e {
            syncd_raft::GroupError::Unavailable(m) => LockError::Unavailable(m),
            syncd_raft::GroupError::Internal(m) => LockError::Internal(m),
        }
    }
}
