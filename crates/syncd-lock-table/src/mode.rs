//! The lock modes and their compatibility rule: domain types of the table and of its raft log.
//!
//! The REST API has a mode type of its own (`syncd_api::locks::LockMode`); the lock service converts at its edge,
//! so renaming anything in the API never changes the log or snapshot format. The serialised names here
//! (`shared`, `exclusive`) are part of that format.

use serde::{Deserialize, Serialize};

/// How a lock is held: many shared holders, or one exclusive holder. Ordered so that the strongest mode held is
/// the lock's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// Compatible with other shared holders.
    Shared,
    /// Compatible with nothing.
    Exclusive,
}

impl LockMode {
    /// Whether a holder in `self` mode may coexist with a holder in `other` mode.
    pub fn compatible_with(self, other: LockMode) -> bool {
        self == LockMode::Shared && other == LockMode::Shared
    }

    /// The mode's name, as in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Shared => "shared",
            LockMode::Exclusive => "exclusive",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LockMode;

    #[test]
    fn only_shared_holders_coexist() {
        assert!(LockMode::Shared.compatible_with(LockMode::Shared));
        assert!(!LockMode::Shared.compatible_with(LockMode::Exclusive));
        assert!(!LockMode::Exclusive.compatible_with(LockMode::Shared));
        assert!(!LockMode::Exclusive.compatible_with(LockMode::Exclusive));
        assert!(LockMode::Exclusive > LockMode::Shared);
    }
}
