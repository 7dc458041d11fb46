//! The lock service: the public lock operations on top of the lock group ([`syncd_raft::Group`]), one module per
//! job.
//!
//! - this module: the service, its start, status, and the lock operations;
//! - [`waits`]: waiting acquires and withdrawing abandoned requests;
//! - [`ticker`]: the leader's lease ticker.
//!
//! Any node accepts any call: writes go to the group's leader (stamped with its clock), reads are linearizable
//! (see [`syncd_raft::group`]).
//!
//! A waiting acquire is queued in the replicated table, so the wait survives a leader change; the node that took
//! the call watches its own state machine until the grant or the end of the wait appears there. A call that gives
//! up (its time is out, or the client went away) removes its queued request with a `CancelWait` command.

mod ticker;
mod waits;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use syncd_api::locks::MembershipChange;
use syncd_api::locks::{
    AcquireRequest, AcquireResponse, LockInfo, LockList, ReleaseRequest, RenewRequest,
    RenewResponse,
};
use syncd_api::status::LockRoleStatus;
use syncd_lock_table::{Command, Outcome};
use syncd_raft::{Group, GroupConfig, NodeId};

use crate::convert;
use crate::error::LockError;
use crate::machine::LockMachine;

/// How long a write or a read may look for a leader and a quorum before answering `unavailable`.
const QUORUM_WAIT: Duration = syncd_raft::group::QUORUM_WAIT;

/// Extra time a waiting acquire allows for the leader's tick to expire its wait before cancelling it itself.
const WAIT_GRACE: Duration = Duration::from_millis(1500);

/// How often the leader checks whether a lease or a wait is due.
const TICK_EVERY: Duration = Duration::from_millis(50);

/// Settings of the lock role of one node: its raft group's.
pub type LockConfig = GroupConfig;

/// The lock group's settings with etcd's default timing (heartbeat 100 ms, election timeout 1000 ms).
pub fn lock_config(
    id: NodeId,
    advertise: String,
    data_dir: PathBuf,
    initial_members: BTreeMap<NodeId, String>,
) -> LockConfig {
    GroupConfig {
        name: "syncd-locks".to_owned(),
        id,
        advertise,
        data_dir,
        initial_members,
        heartbeat_ms: 100,
        election_timeout_ms: 1000,
        snapshot_after_entries: 10_000,
        paths: crate::peer_api::paths(),
        dial_overrides: BTreeMap::new(),
    }
}

/// The lock role of one node.
pub struct LockService {
    group: Arc<Group<LockMachine>>,
    /// Where this node's acquire ids start, and how many it made ([`Self::next_request_id`]).
    request_base: u64,
    requests: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for LockService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockService")
            .field("id", &self.group.id())
            .finish_non_exhaustive()
    }
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl LockService {
    /// Starts the lock group on this node (see [`Group::start`]) and the leader's lease ticker.
    pub async fn start(config: LockConfig) -> anyhow::Result<Arc<Self>> {
        let group = Group::<LockMachine>::start(config).await?;
        let service = Arc::new(LockService {
            request_base: group.incarnation().rotate_left(17) ^ wall_clock_ms(),
            group,
            requests: std::sync::atomic::AtomicU64::new(0),
        });
        tokio::spawn(ticker::tick_leases(Arc::downgrade(&service)));
        Ok(service)
    }

    /// The lock group.
    pub fn group(&self) -> &Arc<Group<LockMachine>> {
        &self.group
    }

    /// The raft handle.
    pub fn raft(&self) -> &syncd_raft::types::Raft<LockMachine> {
        self.group.raft()
    }

    fn is_stopping(&self) -> bool {
        self.group.is_stopping()
    }

    /// Starts shutting down: waiting acquires withdraw and answer `unavailable`, new calls are refused. Raft keeps
    /// running until [`Self::shutdown`], so in-flight calls can finish.
    pub fn begin_shutdown(&self) {
        self.group.begin_shutdown();
    }

    /// Stops the node; with `hand_over`, a leader first hands leadership over.
    pub async fn shutdown(&self, hand_over: bool) {
        self.group.shutdown(hand_over).await;
    }

    /// Hands leadership over if this node leads; whether another node leads now.
    pub async fn hand_over(&self) -> bool {
        self.group.hand_over().await
    }

    /// Changes the lock group's membership (the operator's scaling).
    pub async fn change_membership(&self, change: &MembershipChange) -> Result<(), LockError> {
        Ok(self.group.change_membership(change).await?)
    }

    /// Refuses new calls once shutdown began; internal withdrawals still go through.
    fn check_open(&self) -> Result<(), LockError> {
        if self.is_stopping() {
            return Err(LockError::Unavailable(
                "the node is shutting down".to_owned(),
            ));
        }
        Ok(())
    }

    /// Proposes a command on the leader.
    async fn propose(&self, command: Command) -> Result<(u64, Outcome), LockError> {
        Ok(self.group.propose(command).await?)
    }

    async fn linearizable_read(&self) -> Result<(), LockError> {
        Ok(self.group.linearizable_read().await?)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.group.id()
    }

    /// Whether the node knows a leader and is not shutting down: it can serve lock calls.
    pub fn is_ready(&self) -> bool {
        self.group.is_ready()
    }

    /// This node's raft view, for `/v1/status`.
    pub fn status(&self) -> LockRoleStatus {
        self.group.status()
    }

    /// Acquires a lock, waiting up to `wait_ms` when asked to.
    pub async fn acquire(
        self: &Arc<Self>,
        name: &str,
        req: &AcquireRequest,
    ) -> Result<AcquireResponse, LockError> {
        self.check_open()?;
        let request = self.next_request_id();
        let command = Command::Acquire {
            name: name.to_owned(),
            owner: req.owner.clone(),
            mode: convert::mode_in(req.mode),
            ttl_ms: req.ttl_ms,
            wait_ms: req.wait_ms,
            request,
        };
        let (index, outcome) = if req.wait_ms > 0 {
            self.propose_wait(name, &req.owner, request, command)
                .await?
        } else {
            self.propose(command).await?
        };
        match outcome {
            Outcome::Granted {
                mode,
                token,
                expires_at_ms,
            } => Ok(AcquireResponse {
                name: name.to_owned(),
                owner: req.owner.clone(),
                mode: convert::mode_out(mode),
                token,
                expires_at_ms,
            }),
            Outcome::Waiting { .. } => self.await_grant(name, req, request, index).await,
            Outcome::Deadlock => Err(LockError::Deadlock),
            Outcome::Conflict => Err(LockError::Conflict(format!(
                "{name} is held in a mode incompatible with {}",
                req.mode.as_str()
            ))),
            other => Err(unexpected(&other)),
        }
    }

    /// A new id for an acquire (never 0, which means "unnamed"): the node's storage incarnation mixed with a
    /// counter, so ids from different nodes and restarts do not meet in practice.
    fn next_request_id(&self) -> u64 {
        let n = self
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (self.request_base ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).max(1)
    }

    /// Releases a lock.
    pub async fn release(&self, name: &str, req: &ReleaseRequest) -> Result<(), LockError> {
        self.check_open()?;
        let command = Command::Release {
            name: name.to_owned(),
            owner: req.owner.clone(),
            token: req.token,
        };
        match self.propose(command).await?.1 {
            Outcome::Released => Ok(()),
            Outcome::NotHeld => Err(not_held(name, &req.owner)),
            Outcome::StaleToken => Err(stale(name, &req.owner, req.token)),
            other => Err(unexpected(&other)),
        }
    }

    /// Extends a holder's lease.
    pub async fn renew(&self, name: &str, req: &RenewRequest) -> Result<RenewResponse, LockError> {
        self.check_open()?;
        let command = Command::Renew {
            name: name.to_owned(),
            owner: req.owner.clone(),
            ttl_ms: req.ttl_ms,
            token: req.token,
        };
        match self.propose(command).await?.1 {
            Outcome::Renewed { expires_at_ms } => Ok(RenewResponse { expires_at_ms }),
            Outcome::NotHeld => Err(not_held(name, &req.owner)),
            Outcome::StaleToken => Err(stale(name, &req.owner, req.token)),
            other => Err(unexpected(&other)),
        }
    }

    /// One lock, read linearizably. A lock nobody holds or waits for is reported free.
    pub async fn get(&self, name: &str) -> Result<LockInfo, LockError> {
        self.check_open()?;
        self.linearizable_read().await?;
        Ok(self
            .group
            .read(|t| t.lock_info(name))
            .map(convert::lock_info)
            .unwrap_or_else(|| LockInfo {
                name: name.to_owned(),
                mode: None,
                holders: Vec::new(),
                waiters: Vec::new(),
            }))
    }

    /// Every lock with holders or waiters, read linearizably.
    pub async fn list(&self) -> Result<LockList, LockError> {
        self.check_open()?;
        self.linearizable_read().await?;
        Ok(LockList {
            locks: self
                .group
                .read(|t| t.all_locks())
                .into_iter()
                .map(convert::lock_info)
                .collect(),
        })
    }
}

fn not_held(name: &str, owner: &str) -> LockError {
    LockError::NotHeld {
        name: name.to_owned(),
        owner: owner.to_owned(),
    }
}

fn stale(name: &str, owner: &str, token: Option<u64>) -> LockError {
    LockError::StaleToken {
        name: name.to_owned(),
        owner: owner.to_owned(),
        given: token.unwrap_or(0),
    }
}

fn unexpected(outcome: &Outcome) -> LockError {
    LockError::Internal(format!("unexpected outcome {outcome:?}"))
}
