//! Bodies of `/v1/locks`.
//!
//! Request bodies reject unknown fields so that a typo such as `"ttl"` for `"ttl_ms"` is a 400, not a silently
//! ignored setting.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The lease given when a request names none.
pub const DEFAULT_TTL_MS: u64 = 30_000;
/// The longest lease a single acquire or renew may ask for (one day).
pub const MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// The longest a single acquire may block waiting (two minutes); longer waits are a loop of calls.
pub const MAX_WAIT_MS: u64 = 120_000;

/// How a lock is held: many shared holders, or one exclusive holder. The REST form; the lock table has its own
/// (`syncd_lock_table::LockMode`, with the compatibility rule), so the API and the log format can change apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// Compatible with other shared holders.
    Shared,
    /// Compatible with nothing.
    Exclusive,
}

impl LockMode {
    /// The mode as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Shared => "shared",
            LockMode::Exclusive => "exclusive",
        }
    }
}

fn default_mode() -> LockMode {
    LockMode::Exclusive
}

fn default_ttl() -> u64 {
    DEFAULT_TTL_MS
}

/// `POST /v1/locks/{name}/acquire`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireRequest {
    /// Who asks; the unit of idempotence and of deadlock detection.
    pub owner: String,
    /// Defaults to `exclusive`.
    #[serde(default = "default_mode")]
    pub mode: LockMode,
    /// Lease length once granted; defaults to [`DEFAULT_TTL_MS`].
    #[serde(default = "default_ttl")]
    pub ttl_ms: u64,
    /// How long to block for the grant; 0 (the default) answers at once.
    #[serde(default)]
    pub wait_ms: u64,
}

/// A granted lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcquireResponse {
    /// The lock.
    pub name: String,
    /// The holder.
    pub owner: String,
    /// The mode granted.
    pub mode: LockMode,
    /// The fencing token: strictly greater than every token granted before it.
    pub token: u64,
    /// When the lease ends unless renewed, in milliseconds since the Unix epoch of the cluster's clock.
    pub expires_at_ms: u64,
}

/// `POST /v1/locks/{name}/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The holder.
    pub owner: String,
    /// When given, the release is refused with `stale_token` unless it is the token the owner holds.
    #[serde(default)]
    pub token: Option<u64>,
}

/// Answer to a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseResponse {
    /// Always true: failures are problems.
    pub released: bool,
}

/// `POST /v1/locks/{name}/renew`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// The holder.
    pub owner: String,
    /// The new lease length from now; defaults to [`DEFAULT_TTL_MS`].
    #[serde(default = "default_ttl")]
    pub ttl_ms: u64,
    /// When given, the renewal is refused with `stale_token` unless it is the token the owner holds.
    #[serde(default)]
    pub token: Option<u64>,
}

/// Answer to a renew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewResponse {
    /// The new end of the lease.
    pub expires_at_ms: u64,
}

/// One holder of a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The holder.
    pub owner: String,
    /// Its fencing token.
    pub token: u64,
    /// The end of its lease.
    pub expires_at_ms: u64,
}

/// One waiter of a lock, in queue order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    /// The waiter.
    pub owner: String,
    /// The mode it waits for.
    pub mode: LockMode,
}

/// `GET /v1/locks/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The lock.
    pub name: String,
    /// The mode it is held in, or `null` when free.
    pub mode: Option<LockMode>,
    /// Current holders, by owner.
    pub holders: Vec<Holder>,
    /// Waiters in the order they will be served.
    pub waiters: Vec<Waiter>,
}

/// `GET /v1/locks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockList {
    /// Every lock with holders or waiters, by name.
    pub locks: Vec<LockInfo>,
}

/// `POST /internal/locks/membership`: a change to the lock raft group, sent by the operator to any lock node
/// (which forwards it to the leader). Answers 200 `{"done":true}` or a 503 problem to retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum MembershipChange {
    /// Add a non-voting member and wait (bounded) until it has caught up with the log.
    AddLearner {
        /// Its node id.
        id: u64,
        /// The `host:port` peers reach it on.
        addr: String,
    },
    /// Make exactly these nodes the voters (joint consensus inside raft); members not listed are removed.
    SetVoters {
        /// The new voter set; each must already be a member (voter or learner).
        voters: BTreeSet<u64>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_defaults() {
        let r: AcquireRequest = serde_json::from_str(r#"{"owner":"a"}"#).unwrap();
        assert_eq!(r.mode, LockMode::Exclusive);
        assert_eq!(r.ttl_ms, DEFAULT_TTL_MS);
        assert_eq!(r.wait_ms, 0);
    }

    #[test]
    fn unknown_mode_and_fields_are_refused() {
        assert!(serde_json::from_str::<AcquireRequest>(r#"{"owner":"a","mode":"x"}"#).is_err());
        assert!(serde_json::from_str::<AcquireRequest>(r#"{"owner":"a","ttl":5}"#).is_err());
        assert!(serde_json::from_str::<AcquireRequest>(r#"{"mode":"shared"}"#).is_err());
    }

    #[test]
    fn modes_have_their_wire_names() {
        for mode in [LockMode::Shared, LockMode::Exclusive] {
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
        }
    }
}
