//! The edge between the REST types of `syncd-api` and the lock table's domain types. The raft log and the
//! snapshots carry only domain types, so a change to the API never changes a stored format.

use syncd_api::locks as api;
use syncd_lock_table::{LockMode, LockView};

/// A mode from a request.
pub fn mode_in(mode: api::LockMode) -> LockMode {
    match mode {
        api::LockMode::Shared => LockMode::Shared,
        api::LockMode::Exclusive => LockMode::Exclusive,
    }
}

/// A mode for an answer.
pub fn mode_out(mode: LockMode) -> api::LockMode {
    match mode {
        LockMode::Shared => api::LockMode::Shared,
        LockMode::Exclusive => api::LockMode::Exclusive,
    }
}

/// A lock as the API shows it.
pub fn lock_info(view: LockView) -> api::LockInfo {
    api::LockInfo {
        name: view.name,
        mode: view.mode.map(mode_out),
        holders: view
            .holders
            .into_iter()
            .map(|h| api::Holder {
                owner: h.owner,
                token: h.token,
                expires_at_ms: h.expires_at_ms,
            })
            .collect(),
        waiters: view
            .waiters
            .into_iter()
            .map(|w| api::Waiter {
                owner: w.owner,
                mode: mode_out(w.mode),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log stores modes by these names; the API's names may change, the log's may not.
    #[test]
    fn modes_keep_their_log_names_and_round_trip() {
        for mode in [api::LockMode::Shared, api::LockMode::Exclusive] {
            assert_eq!(mode_out(mode_in(mode)), mode);
        }
        assert_eq!(LockMode::Shared.as_str(), "shared");
        assert_eq!(LockMode::Exclusive.as_str(), "exclusive");
    }
}
