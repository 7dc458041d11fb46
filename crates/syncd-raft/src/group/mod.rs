//! A raft group as a service sees it: start (storage, raft, bootstrap), status, and calls that run on the leader,
//! one module per job.
//!
//! - this module: the group, its start and status;
//! - [`leader`]: running calls on the leader (stamping and proposing, forwarding, finding the leader, membership);
//! - [`reads`]: linearizable reads (the read index and waiting until applied);
//! - [`rejoin`]: storage incarnations, the vote marker, rejoining after a disk loss;
//! - [`handover`]: shutdown and leadership hand-over.
//!
//! Any node accepts any call. Writes are stamped with the leader's clock and proposed on the leader; a follower
//! forwards the command to the leader's write endpoint. Reads are linearizable: the leader confirms its
//! leadership with a quorum; a follower asks the leader for a read index and waits until its own state machine
//! has applied that far (ReadIndex, as in etcd), then reads locally.

mod handover;
mod leader;
mod reads;
mod rejoin;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{InitializeError, RaftError};
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, ServerState, SnapshotPolicy};
pub use syncd_api::locks::MembershipChange;
use syncd_api::status::LockRoleStatus;
use tokio::sync::watch;

use syncd_peer::PeerClient;

use crate::log_store::LogStore;
use crate::machine::Machine;
use crate::network::{Paths, PeerNetwork};
use crate::state_machine::{Shared, StateMachine};
use crate::types::{NodeId, Raft};

pub use leader::{LeaderReply, MembershipReply, ReadIndexReply, WriteReply, Written};

/// How long a write or a read may look for a leader and a quorum before answering `unavailable`.
pub const QUORUM_WAIT: Duration = Duration::from_secs(5);

/// How long a membership change may take, a learner's catch-up included.
const MEMBERSHIP_WAIT: Duration = Duration::from_secs(30);

/// How long adding a learner waits for it to catch up before answering "ask again".
const LEARNER_CATCH_UP: Duration = Duration::from_secs(20);

/// Why a group call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// No leader, no quorum, or shutting down: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected answer.
    #[error("{0}")]
    Internal(String),
}

/// Settings of one raft group on one node.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The group's name (openraft's cluster name, and in logs).
    pub name: String,
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
    /// The group's endpoints.
    pub paths: Paths,
    /// Fault injection for tests: peer addresses dialled through other addresses (a fault-injecting proxy).
    pub dial_overrides: BTreeMap<String, String>,
}

/// What the node's storage held when it started.
#[derive(Debug, Clone, Copy)]
struct Restored {
    vote: Option<openraft::Vote<NodeId>>,
    last_log_index: Option<u64>,
}

/// One raft group on one node.
pub struct Group<M: Machine> {
    config: GroupConfig,
    raft: Raft<M>,
    shared: Arc<Shared<M>>,
    clients: PeerClient,
    paths: Arc<Paths>,
    /// The vote and the log end this node started with; see [`Self::read_index_local`].
    restored: Restored,
    /// The log store's metadata (shared with raft's copy), for the rejoin marker.
    log: LogStore<M>,
    incarnation: u64,
    /// True from the moment this node finds it lost its disk until it is a voter again.
    rejoin_pending: watch::Sender<bool>,
    /// Whether this node may grant votes; see [`Self::may_vote`].
    votes_trusted: watch::Sender<bool>,
    /// Flips to true when the node starts shutting down: no new proposals.
    stopping: watch::Sender<bool>,
    /// True while a leadership hand-over is under way: the leader proposes nothing, so its lease can lapse.
    handing_over: watch::Sender<bool>,
}

impl<M: Machine> std::fmt::Debug for Group<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.config.name)
            .field("id", &self.config.id)
            .finish_non_exhaustive()
    }
}

/// The wall clock; stamps follow it only where nothing that depends on time can notice (see [`crate::clock`]).
pub(crate) fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl<M: Machine> Group<M> {
    /// Opens the node's storage, starts raft, bootstraps the group if this node is the lowest initial member and
    /// nothing was ever stored, and registers the node's storage incarnation.
    pub async fn start(config: GroupConfig) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&config.data_dir)?;
        let mut log = LogStore::<M>::open(&config.data_dir.join("raft.redb"))?;
        let incarnation = log.incarnation();
        let rejoin_pending = log.rejoin_pending()?;
        let votes_trusted = log.votes_trusted()?;
        let log_meta = log.clone();
        let restored = Restored {
            vote: log.read_vote().await?,
            last_log_index: log.get_log_state().await?.last_log_id.map(|l| l.index),
        };
        let sm = StateMachine::<M>::open(&config.data_dir)?;
        let shared = sm.shared();
        let raft_config = openraft::Config {
            cluster_name: config.name.clone(),
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
        let paths = Arc::new(config.paths.clone());
        let raft = Raft::<M>::new(
            config.id,
            Arc::new(raft_config),
            PeerNetwork::<M>::new(clients.clone(), paths.clone()),
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
                Ok(()) => {
                    tracing::info!(group = %config.name, id = config.id, "bootstrapped the group")
                }
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(e.into()),
            }
        }

        let group = Arc::new(Group {
            config,
            raft,
            shared,
            clients,
            paths,
            restored,
            log: log_meta,
            incarnation,
            rejoin_pending: watch::Sender::new(rejoin_pending),
            votes_trusted: watch::Sender::new(votes_trusted),
            stopping: watch::Sender::new(false),
            handing_over: watch::Sender::new(false),
        });
        tokio::spawn(rejoin::register_incarnation(
            Arc::downgrade(&group),
            incarnation,
        ));
        Ok(group)
    }

    /// The raft handle, for the peer endpoints.
    pub fn raft(&self) -> &Raft<M> {
        &self.raft
    }

    /// The applied state and its watch.
    pub fn shared(&self) -> &Arc<Shared<M>> {
        &self.shared
    }

    /// Reads the applied state (not linearizable by itself; see [`Self::linearizable_read`]).
    pub fn read<R>(&self, f: impl FnOnce(&M) -> R) -> R {
        self.shared.read(f)
    }

    /// The group's endpoints.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// This node's storage incarnation (made when its storage was created).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Whether shutdown began.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// A receiver that turns true when shutdown begins.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Starts shutting down: new proposals are refused. Raft keeps running until [`Self::shutdown`], so in-flight
    /// calls can finish.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Whether this node leads the group.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Whether the node knows a leader and is not shutting down: it can serve calls.
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
}
