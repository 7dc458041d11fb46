//! The lock service: the public lock operations on top of the raft group, one module per job.
//!
//! - this module: the service, its start (storage, raft, bootstrap), status, and the lock operations;
//! - [`leader`]: running calls on the leader (stamping and proposing, forwarding, finding the leader, membership);
//! - [`reads`]: linearizable reads (the read index and waiting until applied);
//! - [`waits`]: waiting acquires and withdrawing abandoned requests;
//! - [`rejoin`]: storage incarnations, the vote marker, rejoining after a disk loss;
//! - [`handover`]: shutdown and leadership hand-over;
//! - [`ticker`]: the leader's lease ticker.
//!
//! Any node accepts any call. Writes are stamped with the leader's clock and proposed on the leader; a follower
//! forwards the command to the leader's `/internal/locks/write`. Reads are linearizable: the leader confirms its
//! leadership with a quorum (`ensure_linearizable`); a follower asks the leader for a read index and waits until its
//! own state machine has applied that far (ReadIndex, as in etcd), then reads locally.
//!
//! A waiting acquire is queued in the replicated table, so the wait survives a leader change; the node that took
//! the call watches its own state machine until the grant or the end of the wait appears there. A call that gives
//! up (its time is out, or the client went away) removes its queued request with a `CancelWait` command.

mod handover;
mod leader;
mod reads;
mod rejoin;
mod ticker;
mod waits;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{InitializeError, RaftError};
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, ServerState, SnapshotPolicy};
pub use syncd_api::locks::MembershipChange;
use syncd_api::locks::{
    AcquireRequest, AcquireResponse, LockInfo, LockList, ReleaseRequest, RenewRequest,
    RenewResponse,
};
use syncd_api::status::LockRoleStatus;
use syncd_lock_table::{Command, Outcome};
use tokio::sync::watch;

use syncd_peer::PeerClient;

use crate::convert;
use crate::error::LockError;
use crate::log_store::LogStore;
use crate::network::PeerNetwork;
use crate::state_machine::{LockStateMachine, SharedTable};
use crate::types::{NodeId, Raft};

pub use leader::{LeaderReply, MembershipReply, ReadIndexReply, WriteReply, Written};

/// How long a write or a read may look for a leader and a quorum before answering `unavailable`.
const QUORUM_WAIT: Duration = Duration::from_secs(5);

/// Extra time a waiting acquire allows for the leader's tick to expire its wait before cancelling it itself.
const WAIT_GRACE: Duration = Duration::from_millis(1500);

/// How often the leader checks whether a lease or a wait is due.
const TICK_EVERY: Duration = Duration::from_millis(50);

/// How long a membership change may take, a learner's catch-up included.
const MEMBERSHIP_WAIT: Duration = Duration::from_secs(30);

/// How long adding a learner waits for it to catch up before answering "ask again".
const LEARNER_CATCH_UP: Duration = Duration::from_secs(20);

/// Settings of the lock role of one node.
#[derive(Debug, Clone)]
pub struct LockConfig {
    /// This node's id.
    pub id: NodeId,
    /// The `host:port` peers reach this node on.
    pub advertise: String,
    /// Where the raft log and snapshots live.
    pub data_dir: PathBuf,
    /// The initial members, this node included; the lowest id bootstraps a group with no prior state.
    pub initial_members: BTreeMap<NodeId, String>,
    /// Raft heartbeat interval.
    pub heartbeat_ms: u64,
    /// Minimum election timeout; the maximum, and the leader lease, are twice this.
    pub election_timeout_ms: u64,
    /// Take a snapshot (and purge the log behind it) after this many applied entries.
    pub snapshot_after_entries: u64,
    /// Fault injection for tests: peer addresses dialled through other addresses (a fault-injecting proxy).
    pub dial_overrides: BTreeMap<String, String>,
}

impl LockConfig {
    /// Settings with etcd's default timing (heartbeat 100 ms, election timeout 1000 ms).
    pub fn new(
        id: NodeId,
        advertise: String,
        data_dir: PathBuf,
        initial_members: BTreeMap<NodeId, String>,
    ) -> Self {
        LockConfig {
            id,
            advertise,
            data_dir,
            initial_members,
            heartbeat_ms: 100,
            election_timeout_ms: 1000,
            snapshot_after_entries: 10_000,
            dial_overrides: BTreeMap::new(),
        }
    }
}

/// What the node's storage held when it started.
#[derive(Debug, Clone, Copy)]
struct Restored {
    vote: Option<openraft::Vote<NodeId>>,
    last_log_index: Option<u64>,
}

/// The lock role of one node.
pub struct LockService {
    config: LockConfig,
    raft: Raft,
    table: Arc<SharedTable>,
    clients: PeerClient,
    /// The vote and the log end this node started with; see [`Self::read_index_local`].
    restored: Restored,
    /// The log store's metadata (shared with raft's copy), for the rejoin marker.
    log: LogStore,
    /// True from the moment this node finds it lost its disk until it is a voter again.
    rejoin_pending: watch::Sender<bool>,
    /// Whether this node may grant votes; see [`Self::may_vote`].
    votes_trusted: watch::Sender<bool>,
    /// Where this node's acquire ids start, and how many it made ([`Self::next_request_id`]).
    request_base: u64,
    requests: std::sync::atomic::AtomicU64,
    /// Flips to true when the node starts shutting down: no new proposals, waiting acquires give up.
    stopping: watch::Sender<bool>,
    /// True while a leadership hand-over is under way: the leader proposes nothing, so its lease can lapse.
    handing_over: watch::Sender<bool>,
}

impl std::fmt::Debug for LockService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockService")
            .field("id", &self.config.id)
            .finish_non_exhaustive()
    }
}

/// The wall clock; stamps follow it only where no lease can notice (see [`crate::clock`]).
fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl LockService {
    /// Opens the node's storage, starts raft, bootstraps the group if this node is the lowest initial member and
    /// nothing was ever stored, and starts the leader's lease ticker.
    pub async fn start(config: LockConfig) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&config.data_dir)?;
        let mut log = LogStore::open(&config.data_dir.join("raft.redb"))?;
        let incarnation = log.incarnation();
        let rejoin_pending = log.rejoin_pending()?;
        let votes_trusted = log.votes_trusted()?;
        let log_meta = log.clone();
        let restored = Restored {
            vote: log.read_vote().await?,
            last_log_index: log.get_log_state().await?.last_log_id.map(|l| l.index),
        };
        let sm = LockStateMachine::open(&config.data_dir)?;
        let table = sm.shared();
        let raft_config = openraft::Config {
            cluster_name: "syncd-locks".to_owned(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_timeout_ms,
            election_timeout_max: config.election_timeout_ms * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_after_entries),
            // Keep a snapshot interval's worth of log (at most 1000 entries) so a briefly lagging follower
            // catches up from the log instead of needing a whole snapshot.
            max_in_snapshot_log_to_keep: config.snapshot_after_entries.min(1000),
            ..Default::default()
        }
        .validate()?;
        let clients = PeerClient::with_dial_overrides(config.dial_overrides.clone());
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config),
            PeerNetwork::new(clients.clone()),
            log,
            sm,
        )
        .await?;

        let lowest = config.initial_members.keys().next().copied();
        if lowest == Some(config.id) && !raft.is_initialized().await? {
            let members: BTreeMap<NodeId, BasicNode> = config
                .initial_members
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(id = config.id, "bootstrapped the lock group"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(e.into()),
            }
        }

        let service = Arc::new(LockService {
            config,
            raft,
            table,
            clients,
            restored,
            log: log_meta,
            rejoin_pending: watch::Sender::new(rejoin_pending),
            votes_trusted: watch::Sender::new(votes_trusted),
            request_base: incarnation.rotate_left(17) ^ wall_clock_ms(),
            requests: std::sync::atomic::AtomicU64::new(0),
            stopping: watch::Sender::new(false),
            handing_over: watch::Sender::new(false),
        });
        tokio::spawn(ticker::tick_leases(Arc::downgrade(&service)));
        tokio::spawn(rejoin::register_incarnation(
            Arc::downgrade(&service),
            incarnation,
        ));
        Ok(service)
    }

    /// The raft handle, for the peer endpoints.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Starts shutting down: waiting acquires withdraw and answer `unavailable`, new calls are refused. Raft keeps
    /// running until [`Self::shutdown`], so in-flight calls can finish.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
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

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Whether the node knows a leader and is not shutting down: it can serve lock calls.
    pub fn is_ready(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        !self.is_stopping() && m.current_leader.is_some() && m.state != ServerState::Shutdown
    }

    /// This node's raft view, for `/v1/status`.
    pub fn status(&self) -> LockRoleStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        LockRoleStatus {
            state: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .to_owned(),
            leader: m.current_leader,
            term: m.current_term,
            members: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            applied_index: m.last_applied.map(|l| l.index),
        }
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
            .table
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
                .table
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
