//! Errors of the queue role, each with the stable API code it is answered with.

use syncd_api::ErrorCode;

/// Why a queue call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The request is malformed or out of range.
    #[error("{0}")]
    Invalid(String),
    /// The queue or a receipt does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A message is over the size limit.
    #[error("{0}")]
    TooLarge(String),
    /// No ring yet, no leader, or a failover is in progress; nothing was done: retry.
    #[error("{0}")]
    Unavailable(String),
    /// The outcome is unknown: the leader changed (or stopped answering) after the operation reached it, so it
    /// may or may not have been carried out. Answered 504 `timeout`, and never retried inside the cluster: a
    /// retried produce could store the message twice.
    #[error("{0}")]
    Indeterminate(String),
    /// A bug or an unexpected answer from a peer: logged, never shown in detail to clients.
    #[error("{0}")]
    Internal(String),
}

impl QueueError {
    /// The API code this error is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            QueueError::Invalid(_) => ErrorCode::InvalidRequest,
            QueueError::NotFound(_) => ErrorCode::NotFound,
            QueueError::TooLarge(_) => ErrorCode::TooLarge,
            QueueError::Unavailable(_) => ErrorCode::Unavailable,
            QueueError::Indeterminate(_) => ErrorCode::Timeout,
            QueueError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// Rebuilds an error from a peer's problem answer (forwarding passes errors through unchanged).
    pub fn from_code(code: ErrorCode, detail: String) -> Self {
        match code {
            ErrorCode::InvalidRequest => QueueError::Invalid(detail),
            ErrorCode::NotFound => QueueError::NotFound(detail),
            ErrorCode::TooLarge => QueueError::TooLarge(detail),
            ErrorCode::Unavailable => QueueError::Unavailable(detail),
            ErrorCode::Timeout => QueueError::Indeterminate(detail),
            _ => QueueError::Internal(detail),
        }
    }
}
