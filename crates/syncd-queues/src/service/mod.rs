//! The queue role of one node, one module per job:
//!
//! - this module: configuration, start, readiness, status and shutdown;
//! - [`ops`]: the client operations, carried out on the shard's leader;
//! - [`routing`]: finding a shard's leader in the control state and forwarding to it;
//! - [`reconcile`]: following the control state: leading, following and dropping copies; this node's session
//!   and heartbeats; on the control group's leader, fencing silent sessions; leaders' in-sync proposals;
//! - [`ring`]: ring changes, carried out by the control group (and its own membership).
//!
//! Who leads a shard, in which epoch, and which copies an acknowledgement waits for is decided by the control
//! group ([`crate::control`], rules in `syncd-queue-engine`); no node decides it alone.

mod ops;
mod reconcile;
mod ring;
mod routing;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use syncd_queue_engine::control::ControlState;
use syncd_queue_engine::leader::Timing;
use syncd_queue_log::{FsyncPolicy, LogOptions};
use syncd_raft::GroupConfig;

use crate::addrs::{AddressBook, PeerSource};
use crate::control::{self, ControlGroup, ControlMachine, Sessions};
use crate::error::QueueError;
use crate::peers::PeerClient;
use crate::shard::Shard;
use crate::stream::StreamContext;

/// Configuration of the queue role.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// This node.
    pub id: u64,
    /// Where the role keeps its data (`<data-dir>/queues`).
    pub data_dir: PathBuf,
    /// Peer addresses and how the first ring forms.
    pub source: PeerSource,
    /// Copies of each shard, leader included.
    pub replication_factor: usize,
    /// Virtual nodes per member of a new ring.
    pub vnodes: u32,
    /// Deliveries on the main lane before a message moves to the dead-letter queue.
    pub max_attempts: u32,
    /// When appends are fsynced.
    pub fsync: FsyncPolicy,
    /// Log segment size.
    pub segment_bytes: u64,
    /// A node whose heartbeats stop for this long is fenced (its shards move to in-sync replicas); a replica
    /// that has not caught up for this long is proposed for removal from the in-sync set.
    pub failure_timeout: Duration,
    /// How often heartbeats are sent and leaders look at their replicas.
    pub ping_interval: Duration,
    /// The control group's raft heartbeat.
    pub raft_heartbeat_ms: u64,
    /// The control group's election timeout.
    pub raft_election_timeout_ms: u64,
    /// Fault injection for tests: peer addresses dialled through other addresses (a fault-injecting proxy).
    pub dial_overrides: BTreeMap<String, String>,
}

impl QueueConfig {
    /// Defaults for everything but identity, storage and peers.
    pub fn new(id: u64, data_dir: PathBuf, source: PeerSource) -> QueueConfig {
        QueueConfig {
            dial_overrides: BTreeMap::new(),
            id,
            data_dir,
            source,
            replication_factor: 2,
            vnodes: syncd_ring::DEFAULT_VNODES,
            max_attempts: 5,
            fsync: FsyncPolicy::Always,
            segment_bytes: 64 << 20,
            failure_timeout: Duration::from_millis(1_500),
            ping_interval: Duration::from_millis(200),
            raft_heartbeat_ms: 100,
            raft_election_timeout_ms: 1000,
        }
    }

    fn log_options(&self) -> LogOptions {
        LogOptions {
            segment_bytes: self.segment_bytes,
            fsync: self.fsync,
        }
    }

    fn timing(&self) -> Timing {
        Timing {
            lag_timeout_ms: self.failure_timeout.as_millis() as u64,
            resend_ms: 1_000,
        }
    }

    /// The control group's settings: the static peers are its first members (the lowest bootstraps it) unless
    /// this node joins an existing ring; under DNS discovery node 0 bootstraps it alone and the operator's first
    /// ring adds the others.
    fn group(&self) -> anyhow::Result<GroupConfig> {
        let advertise = self
            .source
            .addr(self.id, &BTreeMap::new())
            .ok_or_else(|| anyhow::anyhow!("no address for this node ({})", self.id))?;
        let initial_members = match &self.source {
            PeerSource::Static { join: true, .. } => BTreeMap::new(),
            PeerSource::Static { peers, .. } => peers.clone(),
            PeerSource::Dns { .. } => {
                BTreeMap::from([(0, self.source.addr(0, &BTreeMap::new()).unwrap_or_default())])
            }
        };
        Ok(GroupConfig {
            name: "syncd-queue-control".to_owned(),
            id: self.id,
            advertise,
            data_dir: self.data_dir.join("control"),
            initial_members,
            heartbeat_ms: self.raft_heartbeat_ms,
            election_timeout_ms: self.raft_election_timeout_ms,
            snapshot_after_entries: 10_000,
            paths: control::paths(),
            dial_overrides: self.dial_overrides.clone(),
        })
    }
}

/// The queue role.
pub struct QueueService {
    config: QueueConfig,
    group: Arc<ControlGroup>,
    sessions: Sessions,
    /// This process's session (see [`crate::control`]).
    session: u64,
    addrs: Arc<AddressBook>,
    peers: PeerClient,
    streams: Arc<StreamContext>,
    shards: RwLock<HashMap<String, Arc<Shard>>>,
    /// Shards with a start of leading or a retire in flight.
    busy: Mutex<HashSet<String>>,
    /// Set once this node has read the control state linearizably after starting (rule 6 of the engine).
    caught_up: AtomicBool,
    stopping: AtomicBool,
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for QueueService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueService")
            .field("id", &self.config.id)
            .finish_non_exhaustive()
    }
}

impl QueueService {
    /// Opens every stored shard, starts the control group, and starts following it.
    pub async fn start(config: QueueConfig) -> anyhow::Result<Arc<QueueService>> {
        let shards_dir = config.data_dir.join("shards");
        std::fs::create_dir_all(&shards_dir)?;
        let mut shards = HashMap::new();
        for entry in std::fs::read_dir(&shards_dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if syncd_api::names::validate_name(&name).is_err() || !entry.path().is_dir() {
                continue;
            }
            let options = config.log_options();
            let path = entry.path();
            let opened = {
                let name = name.clone();
                tokio::task::spawn_blocking(move || Shard::open(&name, &path, options)).await??
            };
            shards.insert(name, Arc::new(opened));
        }
        let group = ControlGroup::start(config.group()?).await?;
        tracing::info!(id = config.id, shards = shards.len(), "queue role started");
        let peers = PeerClient::with_dial_overrides(config.dial_overrides.clone());
        let addrs = Arc::new(AddressBook::new(config.source.clone()));
        let service = Arc::new(QueueService {
            streams: Arc::new(StreamContext {
                me: config.id,
                peers: peers.clone(),
                addrs: addrs.clone(),
            }),
            session: control::new_session(),
            sessions: Sessions::default(),
            config,
            group,
            addrs,
            peers,
            shards: RwLock::new(shards),
            busy: Mutex::new(HashSet::new()),
            caught_up: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            background: Mutex::new(Vec::new()),
        });
        let tasks = vec![
            tokio::spawn(reconcile::background(Arc::downgrade(&service))),
            tokio::spawn(reconcile::follow_control(Arc::downgrade(&service))),
        ];
        service
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(tasks);
        Ok(service)
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.config.id
    }

    /// The control group (its peer routes, status).
    pub fn group(&self) -> &Arc<ControlGroup> {
        &self.group
    }

    /// A copy of the control state as this node has applied it.
    fn control(&self) -> ControlState {
        self.group.read(|m: &ControlMachine| m.0.clone())
    }

    /// Reads one part of the applied control state.
    fn read_control<R>(&self, f: impl FnOnce(&ControlState) -> R) -> R {
        self.group.read(|m: &ControlMachine| f(&m.0))
    }

    /// Ready once the ring is formed, this node's session is registered and it has caught up with the group.
    pub fn is_ready(&self) -> bool {
        let me = self.config.id;
        !self.stopping.load(Ordering::Relaxed)
            && self.caught_up.load(Ordering::Relaxed)
            && self.read_control(|c| {
                c.ring.is_some()
                    && c.nodes
                        .get(&me)
                        .is_some_and(|n| n.session == self.session && !n.fenced)
            })
    }

    fn shard(&self, name: &str) -> Option<Arc<Shard>> {
        self.shards
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn local_shards(&self) -> Vec<Arc<Shard>> {
        self.shards
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    async fn open_shard(&self, name: &str) -> Result<Arc<Shard>, QueueError> {
        if let Some(shard) = self.shard(name) {
            return Ok(shard);
        }
        let path = self.config.data_dir.join("shards").join(name);
        let options = self.config.log_options();
        let owned = name.to_owned();
        let shard = tokio::task::spawn_blocking(move || Shard::open(&owned, &path, options))
            .await
            .map_err(|e| QueueError::Internal(e.to_string()))??;
        let mut shards = self.shards.write().unwrap_or_else(PoisonError::into_inner);
        Ok(shards
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(shard))
            .clone())
    }

    /// Stops: hands every shard this node leads to an in-sync replica (a drain, committed by the control group)
    /// and waits a bounded time for that, then stops background work, the control group and every shard log.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.drain().await;
        for task in self
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        for shard in self.local_shards() {
            shard.lock().follow();
            if let Err(e) = shard.log.clone().close().await {
                tracing::warn!(shard = %shard.name, error = %e, "closing a shard log failed");
            }
        }
        self.group.shutdown(true).await;
    }

    /// The queue part of `/v1/status`.
    pub fn status(&self) -> syncd_api::status::QueueRoleStatus {
        let info = self.ring_info();
        syncd_api::status::QueueRoleStatus {
            epoch: info.epoch,
            alive: info
                .nodes
                .iter()
                .filter(|n| n.alive)
                .map(|n| n.id)
                .collect(),
            members: info.members,
            pending_handoffs: info.pending_handoffs,
        }
    }
}

impl QueueService {
    /// A node's heartbeat, on the control group's leader.
    pub async fn on_heartbeat(&self, beat: control::Heartbeat) -> syncd_raft::LeaderReply<()> {
        control::on_heartbeat(&self.group, &self.sessions, beat).await
    }
}
