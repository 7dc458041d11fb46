//! [`CacheError`]: why a cache operation failed, and its API code.

use syncd_api::ErrorCode;

/// Why a cache call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The key's home cannot be reached or the membership has not settled; retry.
    #[error("{0}")]
    Unavailable(String),
    /// The operation did not finish in time (a holder may be silent until its lease runs out).
    #[error("{0}")]
    Timeout(String),
}

impl CacheError {
    /// The problem+json code.
    pub fn code(&self) -> ErrorCode {
        match self {
            CacheError::Unavailable(_) => ErrorCode::Unavailable,
            CacheError::Timeout(_) => ErrorCode::Timeout,
        }
    }
}
