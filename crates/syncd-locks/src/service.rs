//! The lock service: the public lock operations on top of the raft group.
//!
//! Any node accepts any call. Writes are stamped with the leader's clock and proposed on the leader; a follower
//! forwards the command to the leader's `/internal/locks/write`. Reads are linearizable: the leader confirms its
//! leadership with a quorum (`ensure_linearizable`); a follower asks the leader for a read index and waits until its
//! own state machine has applied that far (ReadIndex, as in etcd), then reads locally.
//!
//! A waiting acquire is queued in the replicated table, so the wait survives a leader change; the node that took
//! the call watches its own state machine until the grant or the end of the wait appears there. A call that gives
//! up (its time is out, or the client went away) removes its queued request with a `CancelWait` command.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
pub use syncd_api::locks::MembershipChange;
use syncd_api::locks::{
    AcquireRequest, AcquireResponse, LockInfo, LockList, LockMode, ReleaseRequest, RenewRequest,
    RenewResponse,
};
use syncd_api::status::LockRoleStatus;
use syncd_lock_table::{Command, Outcome};
use tokio::sync::watch;
use tokio::time::{Instant, timeout_at};

use crate::error::LockError;
use crate::log_store::LogStore;
use crate::network::{PeerClients, PeerNetwork, paths};
use crate::state_machine::{LockStateMachine, SharedTable};
use crate::types::{NodeId, Raft, Stamped};

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

/// What the leader answers a call forwarded to it (a write, a read index, a membership change).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", content = "value", rename_all = "snake_case")]
pub enum LeaderReply<T> {
    /// Done, with this answer.
    Ok(T),
    /// This node is not the leader; nothing was done.
    NotLeader {
        /// The leader it knows of.
        leader: Option<NodeId>,
    },
    /// The call could not be completed (no quorum, shutting down).
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// A committed and applied write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Written {
    /// Log index of the entry.
    pub index: u64,
    /// What the state machine answered.
    pub outcome: Outcome,
}

/// What a forwarded write answers.
pub type WriteReply = LeaderReply<Written>;
/// What a read-index request answers: the index a linearizable read must wait for.
pub type ReadIndexReply = LeaderReply<u64>;
/// What a membership change answers.
pub type MembershipReply = LeaderReply<()>;

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
    clients: PeerClients,
    /// The vote and the log end this node started with; see [`Self::read_index_local`].
    restored: Restored,
    /// The log store's metadata (shared with raft's copy), for the rejoin marker.
    log: LogStore,
    /// True from the moment this node finds it lost its disk until it is a voter again.
    rejoin_pending: watch::Sender<bool>,
    /// Whether this node may grant votes; see [`Self::may_vote`].
    votes_trusted: watch::Sender<bool>,
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
        let clients = PeerClients::new(config.dial_overrides.clone());
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
            stopping: watch::Sender::new(false),
            handing_over: watch::Sender::new(false),
        });
        tokio::spawn(tick_leases(Arc::downgrade(&service)));
        tokio::spawn(register_incarnation(Arc::downgrade(&service), incarnation));
        Ok(service)
    }

    /// Whether this node may grant a vote to a candidate whose log ends at `candidate_last_index`.
    ///
    /// Raft's safety rests on a voter remembering its vote for a term. A node that lost its disk forgot its votes,
    /// so granting votes could give two candidates a majority in one term (two leaders, two exclusive holders).
    /// So new storage grants votes only once the group has registered it as this node's first storage, or once
    /// the rejoin after a disk loss finished (it left the voters and came back as a new member); the marker is
    /// durable, so a whole-cluster restart needs no leader to know it. The one exception is the group's first
    /// election, whose candidate has nothing but the initial membership (log index 0): every member is new then,
    /// and registering needs a leader.
    pub fn may_vote(&self, candidate_last_index: Option<u64>) -> bool {
        candidate_last_index.unwrap_or(0) == 0 || *self.votes_trusted.borrow()
    }

    /// Records that this node's votes can be trusted from now on.
    async fn trust_votes(&self) -> Result<(), LockError> {
        if *self.votes_trusted.borrow() {
            return Ok(());
        }
        self.log
            .trust_votes()
            .await
            .map_err(|e| LockError::Internal(format!("could not record the vote marker: {e}")))?;
        self.votes_trusted.send_replace(true);
        Ok(())
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
        let command = Command::Acquire {
            name: name.to_owned(),
            owner: req.owner.clone(),
            mode: req.mode,
            ttl_ms: req.ttl_ms,
            wait_ms: req.wait_ms,
        };
        let (index, outcome) = if req.wait_ms > 0 {
            self.propose_wait(name, &req.owner, command).await?
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
                mode,
                token,
                expires_at_ms,
            }),
            Outcome::Waiting { .. } => self.await_grant(name, req, index).await,
            Outcome::Deadlock => Err(LockError::Deadlock),
            Outcome::Conflict => Err(LockError::Conflict(format!(
                "{name} is held in a mode incompatible with {}",
                req.mode.as_str()
            ))),
            other => Err(unexpected(&other)),
        }
    }

    /// Proposes an acquire that may queue. The proposal runs in its own task, so a client that goes away while it
    /// is under way cannot leave its outcome unknown: the proposal finishes, and a request it queued is withdrawn
    /// (a `CancelWait` ordered after it) instead of being granted later to nobody and held until its lease ends.
    async fn propose_wait(
        self: &Arc<Self>,
        name: &str,
        owner: &str,
        command: Command,
    ) -> Result<(u64, Outcome), LockError> {
        let service = self.clone();
        let mut guard = WithdrawIfAbandoned {
            service: self.clone(),
            name: name.to_owned(),
            owner: owner.to_owned(),
            proposal: Some(tokio::spawn(async move { service.propose(command).await })),
        };
        let Some(proposal) = guard.proposal.as_mut() else {
            return Err(LockError::Internal("no proposal".to_owned()));
        };
        let result = proposal.await;
        guard.proposal = None;
        result.map_err(|e| LockError::Internal(format!("the proposal task failed: {e}")))?
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
            locks: self.table.read(|t| t.all_locks()),
        })
    }

    /// Waits until the queued acquire at `index` is granted or its wait ends.
    async fn await_grant(
        self: &Arc<Self>,
        name: &str,
        req: &AcquireRequest,
        index: u64,
    ) -> Result<AcquireResponse, LockError> {
        let mut guard = CancelOnDrop {
            service: self.clone(),
            name: name.to_owned(),
            owner: req.owner.clone(),
            armed: true,
        };
        let until = Instant::now() + Duration::from_millis(req.wait_ms) + WAIT_GRACE;
        let mut applied = self.table.subscribe();
        let mut stopping = self.stopping.subscribe();
        loop {
            if *applied.borrow_and_update() >= index {
                match self.wait_state(name, &req.owner, req.mode) {
                    WaitState::Granted(resp) => {
                        guard.armed = false;
                        return Ok(resp);
                    }
                    WaitState::Ended => {
                        guard.armed = false;
                        return Err(wait_ended(name, req.wait_ms));
                    }
                    WaitState::Queued => {}
                }
            }
            tokio::select! {
                changed = timeout_at(until, applied.changed()) => match changed {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(LockError::Unavailable("shutting down".to_owned())),
                    Err(_) => break,
                },
                // The guard withdraws the request on the way out.
                _ = stopping.wait_for(|s| *s) => {
                    return Err(LockError::Unavailable("the node is shutting down".to_owned()));
                }
            }
        }
        // The leader did not expire the wait in time (no leader, or a slow tick): withdraw the request ourselves,
        // then report whatever the table decided first.
        guard.armed = false;
        let (cancel_index, _) = self
            .propose(Command::CancelWait {
                name: name.to_owned(),
                owner: req.owner.clone(),
            })
            .await?;
        self.wait_applied(cancel_index, Instant::now() + QUORUM_WAIT)
            .await?;
        match self.wait_state(name, &req.owner, req.mode) {
            WaitState::Granted(resp) => Ok(resp),
            _ => Err(wait_ended(name, req.wait_ms)),
        }
    }

    fn wait_state(&self, name: &str, owner: &str, mode: LockMode) -> WaitState {
        self.table.read(|t| {
            if let Some(hold) = t.holder(name, owner).filter(|h| h.mode == mode) {
                WaitState::Granted(AcquireResponse {
                    name: name.to_owned(),
                    owner: owner.to_owned(),
                    mode: hold.mode,
                    token: hold.token,
                    expires_at_ms: hold.expires_at_ms,
                })
            } else if t.waiter(name, owner).is_some() {
                WaitState::Queued
            } else {
                WaitState::Ended
            }
        })
    }

    /// Proposes a command on the leader, forwarding it when this node is not the leader.
    async fn propose(&self, command: Command) -> Result<(u64, Outcome), LockError> {
        let written = self
            .on_leader(paths::WRITE, &command, QUORUM_WAIT, || {
                self.write_local(command.clone())
            })
            .await?;
        Ok((written.index, written.outcome))
    }

    /// Runs a call on the leader: `local` when this node leads, else a POST of `body` to the leader's `path`.
    /// Retries (until `patience` runs out) only where the call certainly was not carried out: the target was not
    /// the leader, or the connection was refused.
    async fn on_leader<B, T, F, Fut>(
        &self,
        path: &str,
        body: &B,
        patience: Duration,
        local: F,
    ) -> Result<T, LockError>
    where
        B: Serialize,
        T: DeserializeOwned,
        F: Fn() -> Fut,
        Fut: Future<Output = LeaderReply<T>>,
    {
        let deadline = Instant::now() + patience;
        loop {
            let (leader, addr) = self.wait_leader(deadline).await?;
            let reply = if leader == self.config.id {
                local().await
            } else {
                self.forward(&addr, path, body, deadline).await?
            };
            match reply {
                LeaderReply::Ok(value) => return Ok(value),
                LeaderReply::NotLeader { .. } => self.backoff(deadline).await?,
                LeaderReply::Unavailable { reason } => return Err(LockError::Unavailable(reason)),
            }
        }
    }

    async fn forward<B: Serialize, T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
        deadline: Instant,
    ) -> Result<LeaderReply<T>, LockError> {
        let result = self
            .clients
            .get(addr)
            .post(self.clients.url(addr, path))
            .timeout(deadline.saturating_duration_since(Instant::now()))
            .json(body)
            .send()
            .await;
        match result {
            // Never sent: safe to try again once a leader is known.
            Err(e) if e.is_connect() => Ok(LeaderReply::NotLeader { leader: None }),
            Err(e) => Err(LockError::Unavailable(format!(
                "the leader did not answer ({e}); the outcome is unknown"
            ))),
            Ok(resp) => resp
                .json::<LeaderReply<T>>()
                .await
                .map_err(|e| LockError::Unavailable(format!("bad answer from the leader: {e}"))),
        }
    }

    /// Proposes a command on this node, which must be the leader. Used by the peer endpoint and by [`Self::propose`].
    pub async fn write_local(&self, command: Command) -> WriteReply {
        if *self.handing_over.borrow() {
            // Any append would renew the followers' view of this leader's lease and block the hand-over.
            return LeaderReply::NotLeader { leader: None };
        }
        let stamp = self
            .table
            .clock()
            .stamp(wall_clock_ms(), std::time::Instant::now(), || {
                self.log_fully_applied() && self.table.read(|t| t.next_deadline().is_none())
            });
        let stamped = Stamped {
            now_ms: stamp.ms,
            command,
        };
        let result = self.raft.client_write(stamped).await;
        drop(stamp);
        match result {
            Ok(resp) => match resp.data {
                Some(outcome) => LeaderReply::Ok(Written {
                    index: resp.log_id.index,
                    outcome,
                }),
                None => WriteReply::Unavailable {
                    reason: "the state machine gave no outcome".to_owned(),
                },
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                WriteReply::NotLeader {
                    leader: f.leader_id,
                }
            }
            Err(e) => WriteReply::Unavailable {
                reason: e.to_string(),
            },
        }
    }

    /// Whether every entry of this node's log is applied, so the table shows every lease the log holds.
    fn log_fully_applied(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.last_applied.map(|l| l.index) == m.last_log_index
    }

    /// Makes the next local read linearizable.
    async fn linearizable_read(&self) -> Result<(), LockError> {
        let started = Instant::now();
        let index = self
            .on_leader(paths::READ_INDEX, &(), QUORUM_WAIT, || {
                self.read_index_local()
            })
            .await?;
        self.wait_applied(index, started + QUORUM_WAIT).await
    }

    /// Changes the lock group's membership on the leader, forwarding when needed.
    pub async fn change_membership(&self, change: &MembershipChange) -> Result<(), LockError> {
        self.on_leader(paths::MEMBERSHIP_ON_LEADER, change, MEMBERSHIP_WAIT, || {
            self.change_membership_local(change)
        })
        .await
    }

    /// Carries out a membership change on this node, which must be the leader.
    pub async fn change_membership_local(&self, change: &MembershipChange) -> MembershipReply {
        let result = match change {
            MembershipChange::AddLearner { id, addr } => {
                let adding = self.raft.add_learner(*id, BasicNode::new(addr), true);
                match tokio::time::timeout(LEARNER_CATCH_UP, adding).await {
                    Ok(result) => result.map(|_| ()),
                    Err(_) => {
                        return LeaderReply::Unavailable {
                            reason: format!("learner {id} has not caught up yet; ask again"),
                        };
                    }
                }
            }
            MembershipChange::SetVoters { voters } => self
                .raft
                .change_membership(voters.clone(), false)
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => LeaderReply::Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                LeaderReply::NotLeader {
                    leader: f.leader_id,
                }
            }
            Err(e) => LeaderReply::Unavailable {
                reason: e.to_string(),
            },
        }
    }

    /// Confirms leadership with a quorum and returns the index a linearizable read must wait for.
    ///
    /// openraft answers `max(committed, the leader's first entry of its term)`. That covers every acknowledged
    /// write, except on a leader restored by openraft at startup in its old term: its committed index comes from
    /// disk, where it is saved without an fsync of its own and so may predate writes that were acknowledged
    /// before the crash, and its "first entry of the term" is the old one. Such a leader has every entry it ever
    /// acknowledged in its log (a leader never truncates its own term), so its read barrier also covers the
    /// log end it started with. The barrier is raised only when the vote confirmed is still the restored one.
    pub async fn read_index_local(&self) -> ReadIndexReply {
        let vote_before = self.raft.metrics().borrow().vote;
        match self.raft.get_read_log_id().await {
            Ok((read, _applied)) => {
                let vote_after = self.raft.metrics().borrow().vote;
                if vote_after != vote_before {
                    // Leadership changed while it was being confirmed: let the caller look again.
                    return LeaderReply::NotLeader { leader: None };
                }
                LeaderReply::Ok(read_barrier(
                    read.map(|l| l.index),
                    &self.restored,
                    &vote_after,
                ))
            }
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                LeaderReply::NotLeader {
                    leader: f.leader_id,
                }
            }
            Err(e) => ReadIndexReply::Unavailable {
                reason: e.to_string(),
            },
        }
    }

    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), LockError> {
        let mut applied = self.table.subscribe();
        loop {
            if *applied.borrow_and_update() >= index {
                return Ok(());
            }
            match timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(LockError::Unavailable("shutting down".to_owned())),
                Err(_) => {
                    return Err(LockError::Unavailable(
                        "this node is too far behind the leader".to_owned(),
                    ));
                }
            }
        }
    }

    /// The current leader and its address, waiting (until `deadline`) for one to be known.
    async fn wait_leader(&self, deadline: Instant) -> Result<(NodeId, String), LockError> {
        let mut metrics = self.raft.metrics();
        loop {
            let found = {
                let m = metrics.borrow_and_update();
                m.current_leader.and_then(|leader| {
                    let addr = m
                        .membership_config
                        .membership()
                        .get_node(&leader)
                        .map(|n| n.addr.clone())
                        .or_else(|| self.config.initial_members.get(&leader).cloned())?;
                    Some((leader, addr))
                })
            };
            if let Some(found) = found {
                return Ok(found);
            }
            match timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(LockError::Unavailable("raft stopped".to_owned())),
                Err(_) => {
                    return Err(LockError::Unavailable(
                        "the lock group has no leader (no quorum?)".to_owned(),
                    ));
                }
            }
        }
    }

    /// A short pause before asking again who the leader is, bounded by `deadline`.
    async fn backoff(&self, deadline: Instant) -> Result<(), LockError> {
        let next = Instant::now() + Duration::from_millis(50);
        if next >= deadline {
            return Err(LockError::Unavailable(
                "the lock group has no stable leader".to_owned(),
            ));
        }
        tokio::time::sleep_until(next).await;
        Ok(())
    }

    /// Stops the node: with `hand_over`, a leader first hands leadership over ([`Self::hand_over`]); without it
    /// (the whole cluster is stopping) raft just stops.
    pub async fn shutdown(&self, hand_over: bool) {
        self.begin_shutdown();
        if hand_over {
            self.hand_over().await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
    }

    /// Hands leadership to the most up-to-date follower, if this node leads; returns whether another node leads
    /// now. Used by the pod's preStop hook and on SIGTERM.
    ///
    /// openraft 0.9 has no leadership transfer, and followers refuse votes while they hear from a leader (its
    /// lease). So the leader goes quiet: it refuses new writes, stops heartbeats and its own campaigns, waits out
    /// its lease, then asks the chosen follower to campaign at once. It stays a working follower afterwards.
    pub async fn hand_over(&self) -> bool {
        let Some((id, addr)) = self.pick_successor() else {
            return self.raft.metrics().borrow().current_leader != Some(self.config.id);
        };
        self.handing_over.send_replace(true);
        self.raft.runtime_config().heartbeat(false);
        self.raft.runtime_config().elect(false);
        tokio::time::sleep(Duration::from_millis(self.config.election_timeout_ms * 2)).await;
        let asked = self
            .clients
            .get(&addr)
            .post(self.clients.url(&addr, paths::ELECT))
            .timeout(Duration::from_secs(1))
            .send()
            .await;
        if let Err(e) = &asked {
            tracing::warn!(successor = id, error = %e, "could not ask the successor to campaign");
        }
        let mut metrics = self.raft.metrics();
        let handed = timeout_at(
            Instant::now() + Duration::from_millis(self.config.election_timeout_ms * 3),
            metrics.wait_for(|m| m.current_leader.is_some_and(|l| l != self.config.id)),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        self.raft.runtime_config().heartbeat(true);
        self.raft.runtime_config().elect(true);
        self.handing_over.send_replace(false);
        if handed {
            tracing::info!(successor = id, "handed lock leadership over");
        } else {
            tracing::warn!(
                successor = id,
                "leadership hand-over did not complete; followers will elect after the lease"
            );
        }
        handed
    }

    /// The voters as this node last saw them.
    fn voters(&self) -> std::collections::BTreeSet<NodeId> {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config.membership().voter_ids().collect()
    }

    /// One step of a rejoin after disk loss; `Ok(true)` once this node is a voter again with a fresh log.
    async fn rejoin_step(&self, removed: &mut bool) -> Result<bool, LockError> {
        let me = self.config.id;
        let voters = self.voters();
        if !*removed {
            if !voters.contains(&me) {
                // Not a voter (a learner, or being scaled away): membership is the operator's business.
                return Ok(true);
            }
            let others = voters.iter().copied().filter(|v| *v != me).collect();
            self.change_membership(&MembershipChange::SetVoters { voters: others })
                .await?;
            *removed = true;
            return Ok(false);
        }
        // Added back as a learner; the call returns once this node has caught up.
        self.change_membership(&MembershipChange::AddLearner {
            id: me,
            addr: self.config.advertise.clone(),
        })
        .await?;
        let mut voters = self.voters();
        voters.insert(me);
        self.change_membership(&MembershipChange::SetVoters { voters })
            .await?;
        Ok(true)
    }

    /// The voter (not this node) that has replicated the most of the log, when this node leads.
    fn pick_successor(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.config.id) {
            return None;
        }
        let membership = m.membership_config.membership();
        let replication = m.replication.as_ref()?;
        membership
            .voter_ids()
            .filter(|id| *id != self.config.id)
            .max_by_key(|id| replication.get(id).copied().flatten().map(|l| l.index))
            .and_then(|id| Some((id, membership.get_node(&id)?.addr.clone())))
    }
}

enum WaitState {
    Granted(AcquireResponse),
    Queued,
    Ended,
}

/// Withdraws a queued acquire when its HTTP call is dropped (the client went away) before it resolved.
struct CancelOnDrop {
    service: Arc<LockService>,
    name: String,
    owner: String,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let service = self.service.clone();
        let command = Command::CancelWait {
            name: std::mem::take(&mut self.name),
            owner: std::mem::take(&mut self.owner),
        };
        tokio::spawn(async move {
            if let Err(e) = service.propose(command).await {
                tracing::warn!(error = %e, "could not withdraw an abandoned lock request");
            }
        });
    }
}

/// Withdraws a possibly queued acquire whose caller went away while it was being proposed: once the proposal
/// answers, a request that queued is cancelled.
struct WithdrawIfAbandoned {
    service: Arc<LockService>,
    name: String,
    owner: String,
    proposal: Option<tokio::task::JoinHandle<Result<(u64, Outcome), LockError>>>,
}

impl Drop for WithdrawIfAbandoned {
    fn drop(&mut self) {
        let Some(proposal) = self.proposal.take() else {
            return;
        };
        let service = self.service.clone();
        let command = Command::CancelWait {
            name: std::mem::take(&mut self.name),
            owner: std::mem::take(&mut self.owner),
        };
        tokio::spawn(async move {
            if let Ok(Ok((_, Outcome::Waiting { .. }))) = proposal.await
                && let Err(e) = service.propose(command).await
            {
                tracing::warn!(error = %e, "could not withdraw an abandoned lock request");
            }
        });
    }
}

/// Registers this node's storage incarnation with the group. When the group knew another incarnation for this id,
/// the node lost its disk: its log and its vote are gone, which raft's guarantees do not allow of a voter, so it
/// leaves the voters, comes back as a learner, and is promoted once it has caught up.
async fn register_incarnation(service: std::sync::Weak<LockService>, incarnation: u64) {
    let rejoin = loop {
        let Some(s) = service.upgrade() else {
            return;
        };
        if s.is_stopping() {
            return;
        }
        let command = Command::RegisterNode {
            id: s.config.id,
            incarnation,
        };
        match s.propose(command).await {
            Ok((index, Outcome::Registered { previous })) => {
                let lost_disk = previous.is_some_and(|p| p != incarnation);
                if lost_disk {
                    // Durably, so a restart in the middle of the rejoin neither votes nor forgets to finish.
                    if let Err(e) = s.log.set_rejoin_pending(true).await {
                        tracing::error!(error = %e, "could not record the rejoin; retrying");
                        drop(s);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    s.rejoin_pending.send_replace(true);
                    tracing::warn!(
                        id = s.config.id,
                        "this node's storage is new but the group knew the node: rejoining raft as a new member"
                    );
                }
                let resumed = !lost_disk && *s.rejoin_pending.borrow();
                if !lost_disk
                    && !resumed
                    && let Err(e) = s.trust_votes().await
                {
                    tracing::error!(error = %e, "could not record the vote marker; retrying");
                    drop(s);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                if lost_disk || resumed {
                    // See the membership as of the registration before deciding anything.
                    if let Err(e) = s.wait_applied(index, Instant::now() + QUORUM_WAIT).await {
                        tracing::warn!(error = %e, "could not catch up before rejoining");
                    }
                    break Some(resumed);
                }
                break None;
            }
            Ok((_, other)) => {
                tracing::error!(outcome = ?other, "unexpected answer to a node registration");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "node registration not accepted yet"),
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let Some(resumed) = rejoin else {
        return;
    };
    // A rejoin cut short by a restart after this node left the voters goes on with adding it back.
    let mut removed = resumed
        && service
            .upgrade()
            .is_some_and(|s| !s.voters().contains(&s.config.id));
    loop {
        let Some(s) = service.upgrade() else {
            return;
        };
        if s.is_stopping() {
            return;
        }
        match s.rejoin_step(&mut removed).await {
            Ok(true) => {
                if let Err(e) = s.trust_votes().await {
                    tracing::warn!(error = %e, "could not record the end of the rejoin; retrying");
                    drop(s);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                if let Err(e) = s.log.set_rejoin_pending(false).await {
                    tracing::warn!(error = %e, "could not record the end of the rejoin; retrying");
                    drop(s);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                s.rejoin_pending.send_replace(false);
                tracing::info!(
                    id = s.config.id,
                    rejoined = removed,
                    "rejoin after disk loss finished"
                );
                return;
            }
            Ok(false) => continue,
            Err(e) => tracing::warn!(error = %e, "rejoin step failed; retrying"),
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// On the leader, proposes a `Tick` whenever a lease or a wait is due, so expiry happens without other traffic.
async fn tick_leases(service: std::sync::Weak<LockService>) {
    let mut every = tokio::time::interval(TICK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let Some(service) = service.upgrade() else {
            return;
        };
        if service.is_stopping() {
            return;
        }
        let leading = service.raft.metrics().borrow().state == ServerState::Leader;
        let now = service.table.clock().now_ms(std::time::Instant::now());
        let due = service
            .table
            .read(|t| t.next_deadline())
            .is_some_and(|d| d <= now);
        if leading
            && due
            && let WriteReply::Unavailable { reason } = service.write_local(Command::Tick).await
        {
            tracing::debug!(%reason, "lease tick not applied");
        }
    }
}

/// The index a linearizable read waits for, given what openraft answered and the leader's current vote.
fn read_barrier(read: Option<u64>, restored: &Restored, vote: &openraft::Vote<NodeId>) -> u64 {
    let read = read.unwrap_or(0);
    if restored.vote.as_ref() == Some(vote) {
        read.max(restored.last_log_index.unwrap_or(0))
    } else {
        read
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

fn wait_ended(name: &str, wait_ms: u64) -> LockError {
    LockError::Conflict(format!("{name} was not granted within {wait_ms} ms"))
}

fn unexpected(outcome: &Outcome) -> LockError {
    LockError::Internal(format!("unexpected outcome {outcome:?}"))
}
