//! The queue role of one node: routing, ownership, takeover, hand-off and the client operations.
//!
//! Every queue is one shard placed by the ring: an owner and `replication_factor - 1` successors. The *acting*
//! owner is the first live node of that placement. Any node forwards an operation to the acting owner; the acting
//! owner serves it once it owns the shard in a term. To own a shard in a new term a node asks every other copy
//! holder (the placement, plus the previous ring's placement while a membership change settles) to promise the
//! term, pulls whatever the best copy has that it lacks, and writes a `Term` record. It does so only if it can
//! prove it loses nothing acknowledged: it or a responder was counted in sync by the last owner, or every holder
//! answered. Otherwise the shard stays unavailable (503) until the missing holder returns.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use syncd_api::queues::{
    QueueInfo, QueueList, ReceiveRequest, ReceivedMessage, RingChange, RingInfo, RingNode, shard_of,
};
use syncd_queue_core::{Lane, Receipt, Record};
use syncd_queue_log::{FsyncPolicy, LogOptions};

use crate::error::QueueError;
use crate::log_match::match_point;
use crate::membership::{Membership, PeerSource};
use crate::peers::{PeerClient, PeerError};
use crate::shard::{Role, Shard};
use crate::stream::{self, StreamContext};
use crate::wire::{
    FetchRequest, FetchResponse, LogSummary, Op, OpRequest, OpResult, PingResponse, PrepareRequest,
    PrepareResponse, RingState, ShardList, TakeOverRequest, paths,
};

/// How long an operation keeps retrying while its shard fails over or a forward loops.
const ROUTE_PATIENCE: Duration = Duration::from_secs(8);
/// Forwards allowed before answering 503 (views of liveness differ for a moment during failures).
const MAX_HOPS: u32 = 2;
/// Timeout of a peer's prepare, fetch or ping.
const PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest a takeover may spend pulling entries from a better copy.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(60);

/// Configuration of the queue role.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// This node.
    pub id: u64,
    /// Where the role keeps its data (`<data-dir>/queues`).
    pub data_dir: PathBuf,
    /// Peer addresses and how the first ring forms.
    pub source: PeerSource,
    /// Copies of each shard, owner included.
    pub replication_factor: usize,
    /// Virtual nodes per member of a new ring.
    pub vnodes: u32,
    /// Deliveries on the main lane before a message moves to the dead-letter queue.
    pub max_attempts: u32,
    /// When appends are fsynced.
    pub fsync: FsyncPolicy,
    /// Log segment size.
    pub segment_bytes: u64,
    /// A peer silent for this long is down.
    pub failure_timeout: Duration,
    /// How often peers are pinged and ownership is checked.
    pub ping_interval: Duration,
    /// Fault injection for tests: peer addresses dialled through other addresses (a fault-injecting proxy).
    pub dial_overrides: std::collections::BTreeMap<String, String>,
}

impl QueueConfig {
    /// Defaults for everything but identity, storage and peers.
    pub fn new(id: u64, data_dir: PathBuf, source: PeerSource) -> QueueConfig {
        QueueConfig {
            dial_overrides: std::collections::BTreeMap::new(),
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
        }
    }

    fn log_options(&self) -> LogOptions {
        LogOptions {
            segment_bytes: self.segment_bytes,
            fsync: self.fsync,
        }
    }
}

/// The queue role.
pub struct QueueService {
    config: QueueConfig,
    membership: Arc<Membership>,
    peers: PeerClient,
    streams: Arc<StreamContext>,
    shards: RwLock<HashMap<String, Arc<Shard>>>,
    takeovers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Shards with a background hand-off, retire or takeover in flight, and when a failed one may run again.
    background_work: Mutex<HashMap<String, Option<Instant>>>,
    pending_handoffs: AtomicUsize,
    /// The ring epoch `pending_handoffs` was counted on.
    pending_epoch: std::sync::atomic::AtomicU64,
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

/// Wall-clock milliseconds: visibility deadlines are the owner's clock, written into the log.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lane(dead: bool) -> Lane {
    if dead { Lane::Dead } else { Lane::Main }
}

fn parse_receipts(receipts: &[String]) -> Result<Vec<Receipt>, QueueError> {
    receipts
        .iter()
        .map(|r| {
            r.parse::<Receipt>()
                .map_err(|_| QueueError::Invalid(format!("{r:?} is not a receipt")))
        })
        .collect()
}

fn peer_error(e: PeerError) -> QueueError {
    match e {
        PeerError::Unreachable(detail) => {
            QueueError::Unavailable(format!("peer unreachable: {detail}"))
        }
        PeerError::Problem { code, detail } => QueueError::from_code(code, detail),
    }
}

impl QueueService {
    /// Opens the ring and every stored shard, and starts pinging peers and watching ownership.
    pub async fn start(config: QueueConfig) -> anyhow::Result<Arc<QueueService>> {
        let membership = Arc::new(Membership::open(
            config.id,
            config.source.clone(),
            &config.data_dir,
            config.vnodes,
            config.failure_timeout,
        )?);
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
        tracing::info!(
            id = config.id,
            shards = shards.len(),
            epoch = membership.epoch(),
            "queue role started"
        );
        let peers = PeerClient::with_dial_overrides(config.dial_overrides.clone());
        let service = Arc::new(QueueService {
            streams: Arc::new(StreamContext {
                me: config.id,
                peers: peers.clone(),
                membership: membership.clone(),
            }),
            config,
            membership,
            peers,
            shards: RwLock::new(shards),
            takeovers: Mutex::new(HashMap::new()),
            background_work: Mutex::new(HashMap::new()),
            pending_handoffs: AtomicUsize::new(0),
            pending_epoch: std::sync::atomic::AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            background: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(background(Arc::downgrade(&service)));
        service
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
        Ok(service)
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.config.id
    }

    /// Ready once the ring is formed.
    pub fn is_ready(&self) -> bool {
        self.membership.rings().is_some() && !self.stopping.load(Ordering::Relaxed)
    }

    /// Stops background work and owning, then flushes and closes every shard log.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        for task in self
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
        for shard in self.local_shards() {
            shard.lock().role = Role::Follower;
            if let Err(e) = shard.log.clone().close().await {
                tracing::warn!(shard = %shard.name, error = %e, "closing a shard log failed");
            }
        }
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

    /// Where `shard`'s copies live: the placement on the current ring, and on the previous one.
    fn placements(&self, shard: &str) -> Result<(Vec<u64>, Vec<u64>), QueueError> {
        let (ring, previous) = self.membership.rings().ok_or_else(|| {
            QueueError::Unavailable("the queue ring is not formed yet".to_owned())
        })?;
        let rf = self.config.replication_factor.max(1);
        let now = ring.placement(shard, rf);
        let before = previous.map(|p| p.placement(shard, rf)).unwrap_or_default();
        Ok((now, before))
    }

    // ----- client operations -----

    /// `POST /v1/queues/{q}/messages`.
    pub async fn produce(
        &self,
        queue: &str,
        bodies: Vec<String>,
    ) -> Result<Vec<String>, QueueError> {
        let (shard, dead) = shard_of(queue);
        if dead {
            return Err(QueueError::Invalid(format!(
                "{queue} is a dead-letter queue; messages arrive there only after failing on {shard}"
            )));
        }
        match self.execute(shard, Op::Produce { bodies }, 0).await? {
            OpResult::Produced { ids } => Ok(ids),
            other => Err(unexpected(&other)),
        }
    }

    /// `POST /v1/queues/{q}/receive`.
    pub async fn receive(
        &self,
        queue: &str,
        request: ReceiveRequest,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let (shard, dead) = shard_of(queue);
        match self
            .execute(shard, Op::Receive { dead, request }, 0)
            .await?
        {
            OpResult::Received { messages } => Ok(messages),
            other => Err(unexpected(&other)),
        }
    }

    /// `POST /v1/queues/{q}/ack`.
    pub async fn ack(&self, queue: &str, receipts: Vec<String>) -> Result<usize, QueueError> {
        parse_receipts(&receipts)?;
        let (shard, dead) = shard_of(queue);
        match self.execute(shard, Op::Ack { dead, receipts }, 0).await? {
            OpResult::Acked { acked } => Ok(acked),
            other => Err(unexpected(&other)),
        }
    }

    /// `POST /v1/queues/{q}/nack`.
    pub async fn nack(&self, queue: &str, receipts: Vec<String>) -> Result<usize, QueueError> {
        parse_receipts(&receipts)?;
        let (shard, dead) = shard_of(queue);
        match self.execute(shard, Op::Nack { dead, receipts }, 0).await? {
            OpResult::Requeued { requeued } => Ok(requeued),
            other => Err(unexpected(&other)),
        }
    }

    /// `GET /v1/queues/{q}`.
    pub async fn info(&self, queue: &str) -> Result<QueueInfo, QueueError> {
        let (shard, dead) = shard_of(queue);
        match self.execute(shard, Op::Info { dead }, 0).await? {
            OpResult::Info(info) => Ok(info),
            other => Err(unexpected(&other)),
        }
    }

    /// `GET /v1/queues`: the union of what every live node stores.
    pub async fn list(&self) -> Result<QueueList, QueueError> {
        let mut names: BTreeSet<String> = self.stored_names().into_iter().collect();
        let calls = self.membership.peer_ids().into_iter().filter_map(|id| {
            let addr = self.membership.addr(id)?;
            Some(async move {
                self.peers
                    .get_json::<ShardList>(&addr, paths::SHARDS, PEER_TIMEOUT)
                    .await
            })
        });
        for list in join_all(calls).await.into_iter().flatten() {
            names.extend(list.shards);
        }
        Ok(QueueList {
            queues: names.into_iter().collect(),
        })
    }

    fn stored_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for shard in self.local_shards() {
            let core = shard.lock();
            if !core.queue.is_empty() || core.last.lsn > 0 {
                out.push(shard.name.clone());
            }
            let (ready, inflight) = core.queue.counts(Lane::Dead, now_ms());
            if ready + inflight > 0 {
                out.push(syncd_api::queues::dlq_name(&shard.name));
            }
        }
        out
    }

    /// `GET /v1/ring`.
    pub fn ring_info(&self) -> RingInfo {
        let state = self.membership.ring_state();
        let members = state
            .as_ref()
            .map(|s| s.members.clone())
            .unwrap_or_default();
        RingInfo {
            epoch: state.as_ref().map(|s| s.epoch).unwrap_or(0),
            vnodes: state
                .as_ref()
                .map(|s| s.vnodes)
                .unwrap_or(self.config.vnodes),
            replication_factor: self.config.replication_factor as u32,
            nodes: members
                .iter()
                .map(|id| RingNode {
                    id: *id,
                    addr: self.membership.addr(*id),
                    alive: self.membership.alive(*id),
                })
                .collect(),
            members,
            pending_handoffs: self.pending_handoffs(),
        }
    }

    /// Shards not settled on the current ring; until this node has looked at its shards on a newly adopted ring,
    /// at least 1 (a count from the previous epoch says nothing about this one).
    fn pending_handoffs(&self) -> usize {
        let pending = self.pending_handoffs.load(Ordering::Relaxed);
        if self.pending_epoch.load(Ordering::Relaxed) == self.membership.epoch() {
            pending
        } else {
            pending.max(1)
        }
    }

    /// `POST /internal/ring`: forms the next ring and spreads it to every old and new member.
    pub async fn change_ring(
        &self,
        change: RingChange,
        addrs: BTreeMap<u64, String>,
    ) -> Result<RingInfo, QueueError> {
        let members: BTreeSet<u64> = change.members.iter().copied().collect();
        if self.pending_handoffs() > 0 {
            return Err(QueueError::Unavailable(
                "the previous ring change has not settled on this node yet (pending hand-offs); retry".to_owned(),
            ));
        }
        if members.is_empty() {
            return Err(QueueError::Invalid(
                "a ring needs at least one member".to_owned(),
            ));
        }
        if let Some(state) = self.membership.ring_state()
            && state.members.iter().copied().collect::<BTreeSet<_>>() == members
        {
            return Ok(self.ring_info());
        }
        let next =
            self.membership
                .next_ring(members.into_iter().collect(), addrs, self.config.vnodes);
        for id in &next.members {
            if self.membership.addr(*id).is_none()
                && !next.addrs.contains_key(id)
                && !matches!(self.config.source, PeerSource::Dns { .. })
            {
                return Err(QueueError::Invalid(format!(
                    "no address known for node {id}"
                )));
            }
        }
        self.membership
            .adopt(next.clone())
            .map_err(|e| QueueError::Internal(e.to_string()))?;
        self.spread_ring(&next).await;
        Ok(self.ring_info())
    }

    async fn spread_ring(&self, state: &RingState) {
        let targets: BTreeSet<u64> = state
            .members
            .iter()
            .chain(state.previous.iter())
            .copied()
            .filter(|id| *id != self.config.id)
            .collect();
        let calls = targets.into_iter().filter_map(|id| {
            let addr = self.membership.addr(id)?;
            Some(async move {
                let sent: Result<serde_json::Value, _> = self
                    .peers
                    .post_json(&addr, paths::RING_ADOPT, state, PEER_TIMEOUT)
                    .await;
                if let Err(e) = sent {
                    tracing::info!(peer = id, error = %e, "could not send the new ring; it will learn it by ping");
                }
            })
        });
        join_all(calls).await;
    }

    // ----- routing -----

    async fn execute(&self, shard: &str, op: Op, hops: u32) -> Result<OpResult, QueueError> {
        let wait = match &op {
            Op::Receive { request, .. } => Duration::from_millis(request.wait_ms),
            _ => Duration::ZERO,
        };
        let deadline = Instant::now() + ROUTE_PATIENCE + wait;
        loop {
            match self.route_once(shard, &op, hops).await {
                Err(QueueError::Unavailable(detail))
                    if Instant::now() < deadline && !self.stopping.load(Ordering::Relaxed) =>
                {
                    tracing::debug!(shard, %detail, "retrying a queue operation");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    async fn route_once(&self, shard: &str, op: &Op, hops: u32) -> Result<OpResult, QueueError> {
        let (placement, _) = self.placements(shard)?;
        let owner = self.membership.acting_owner(&placement).ok_or_else(|| {
            QueueError::Unavailable(format!("every node holding queue {shard} is down"))
        })?;
        if owner == self.config.id {
            return self.execute_local(shard, op.clone()).await;
        }
        if hops >= MAX_HOPS {
            return Err(QueueError::Unavailable(format!(
                "nodes disagree about who serves queue {shard}; retry"
            )));
        }
        let addr = self
            .membership
            .addr(owner)
            .ok_or_else(|| QueueError::Unavailable(format!("no address for node {owner}")))?;
        let timeout = match op {
            Op::Receive { request, .. } => {
                Duration::from_millis(request.wait_ms) + ROUTE_PATIENCE * 2
            }
            _ => ROUTE_PATIENCE * 2,
        };
        let request = OpRequest {
            shard: shard.to_owned(),
            op: op.clone(),
            hops: hops + 1,
        };
        self.peers
            .post_json(&addr, paths::OP, &request, timeout)
            .await
            .map_err(peer_error)
    }

    async fn execute_local(&self, name: &str, op: Op) -> Result<OpResult, QueueError> {
        let create = matches!(op, Op::Produce { .. } | Op::Receive { .. });
        let shard = self.ensure_owner(name, create).await?;
        match op {
            Op::Produce { bodies } => {
                let ids = shard
                    .write(
                        |_| {
                            Ok(bodies
                                .into_iter()
                                .map(|body| Record::Enqueue { body })
                                .collect())
                        },
                        |_, first, records| {
                            (first..first + records.len() as u64)
                                .map(|id| id.to_string())
                                .collect::<Vec<_>>()
                        },
                    )
                    .await?;
                shard.deliverable.notify_waiters();
                Ok(OpResult::Produced { ids })
            }
            Op::Receive { dead, request } => {
                let messages = self.receive_local(&shard, lane(dead), &request).await?;
                Ok(OpResult::Received { messages })
            }
            Op::Ack { dead, receipts } => {
                let acked = settle(&shard, name, lane(dead), &receipts, |lane, receipts| {
                    Record::Ack { lane, receipts }
                })
                .await?;
                Ok(OpResult::Acked { acked })
            }
            Op::Nack { dead, receipts } => {
                let requeued = settle(&shard, name, lane(dead), &receipts, |lane, receipts| {
                    Record::Requeue { lane, receipts }
                })
                .await?;
                shard.deliverable.notify_waiters();
                Ok(OpResult::Requeued { requeued })
            }
            Op::Info { dead } => {
                let (placement, _) = self.placements(name)?;
                let core = shard.lock();
                let (ready, inflight) = core.queue.counts(lane(dead), now_ms());
                let (term, in_sync) = match &core.role {
                    Role::Owner { term, streams } => (
                        *term,
                        streams
                            .iter()
                            .filter(|s| s.current().counted)
                            .map(|s| s.peer)
                            .collect(),
                    ),
                    Role::Follower => (0, Vec::new()),
                };
                Ok(OpResult::Info(QueueInfo {
                    name: if dead {
                        syncd_api::queues::dlq_name(name)
                    } else {
                        name.to_owned()
                    },
                    ready,
                    inflight,
                    owner: self.config.id,
                    replicas: placement
                        .into_iter()
                        .filter(|id| *id != self.config.id)
                        .collect(),
                    in_sync,
                    term,
                }))
            }
        }
    }

    async fn receive_local(
        &self,
        shard: &Arc<Shard>,
        lane: Lane,
        request: &ReceiveRequest,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let deadline = Instant::now() + Duration::from_millis(request.wait_ms);
        let max_attempts = self.config.max_attempts;
        loop {
            let woken = shard.deliverable.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = now_ms();
            let delivered = shard
                .write(
                    |state| {
                        Ok(state.plan_receive(
                            lane,
                            request.max,
                            now,
                            request.visibility_ms,
                            max_attempts,
                        ))
                    },
                    |state, first, records| {
                        records
                            .iter()
                            .enumerate()
                            .find_map(|(i, record)| match record {
                                Record::Deliver { ids, .. } => {
                                    Some(state.delivered(first + i as u64, ids))
                                }
                                _ => None,
                            })
                            .unwrap_or_default()
                    },
                )
                .await?;
            if !delivered.is_empty() || Instant::now() >= deadline {
                return Ok(delivered
                    .into_iter()
                    .map(|d| ReceivedMessage {
                        id: d.id.to_string(),
                        body: d.body,
                        receipt: d.receipt.to_string(),
                        attempt: d.attempt,
                    })
                    .collect());
            }
            // Sleep until a message may be deliverable: a produce or nack, a visibility deadline, or the end.
            let mut until = deadline;
            if let Some(next) = shard.lock().queue.next_deadline(lane) {
                let in_ms = next.saturating_sub(now_ms());
                until = until.min(Instant::now() + Duration::from_millis(in_ms));
            }
            let _ = tokio::time::timeout_at(until.into(), woken).await;
            if self.stopping.load(Ordering::Relaxed) {
                return Ok(Vec::new());
            }
        }
    }

    // ----- ownership -----

    fn takeover_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.takeovers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    async fn ensure_owner(&self, name: &str, create: bool) -> Result<Arc<Shard>, QueueError> {
        if let Some(shard) = self.shard(name)
            && shard.lock().owner_term().is_some()
        {
            return Ok(shard);
        }
        self.take_over(name, create).await
    }

    /// Becomes the owner of `name` in a new term (see the module doc).
    async fn take_over(&self, name: &str, create: bool) -> Result<Arc<Shard>, QueueError> {
        let lock = self.takeover_lock(name);
        let _one_at_a_time = lock.lock().await;
        if let Some(shard) = self.shard(name)
            && shard.lock().owner_term().is_some()
        {
            return Ok(shard);
        }
        let me = self.config.id;
        let (placement, previous) = self.placements(name)?;
        if !placement.contains(&me) {
            return Err(QueueError::Unavailable(format!(
                "node {me} does not hold queue {name} on the current ring"
            )));
        }
        let others: BTreeSet<u64> = placement
            .iter()
            .chain(previous.iter())
            .copied()
            .filter(|id| *id != me)
            .collect();
        let local = self.shard(name);
        let mut term = local
            .as_ref()
            .map(|s| {
                let core = s.lock();
                core.promised.max(core.last.term)
            })
            .unwrap_or(0)
            + 1;
        let mut answers: BTreeMap<u64, LogSummary> = BTreeMap::new();
        let mut settled = false;
        for _ in 0..8 {
            if let Some(shard) = &local {
                let _gate = shard.gate.lock().await;
                if !shard.promise(term).await? {
                    term = shard.lock().promised + 1;
                    continue;
                }
            }
            answers.clear();
            let mut rejected = 0;
            let calls = others.iter().map(|id| self.prepare(*id, name, term));
            for (id, answer) in others.iter().zip(join_all(calls).await) {
                match answer {
                    Some(PrepareResponse::Promised { summary }) => {
                        answers.insert(*id, summary);
                    }
                    Some(PrepareResponse::Rejected { promised }) => {
                        rejected = rejected.max(promised);
                    }
                    None => {}
                }
            }
            if rejected == 0 {
                settled = true;
                break;
            }
            term = rejected + 1;
        }
        if !settled {
            return Err(QueueError::Unavailable(format!(
                "queue {name}: other nodes keep claiming it; retry"
            )));
        }
        let ours = local.as_ref().map(|s| s.summary()).unwrap_or_default();
        let any_data = ours.exists || answers.values().any(|s| s.exists);
        let everyone = others.iter().all(|id| answers.contains_key(id));
        if !any_data && !everyone {
            // Someone unreachable may hold it: creating it empty here could hide their messages.
            return Err(QueueError::Unavailable(format!(
                "queue {name}: a copy holder is unreachable; retry"
            )));
        }
        if !any_data && !create {
            return Err(QueueError::NotFound(format!("queue {name} does not exist")));
        }
        let safe = !any_data || ours.synced || answers.values().any(|s| s.synced) || everyone;
        if !safe {
            return Err(QueueError::Unavailable(format!(
                "queue {name}: its owner is down and no copy known to be in sync is reachable; \
                 waiting for the owner to return"
            )));
        }
        let shard = match local {
            Some(shard) => shard,
            None => {
                let shard = self.open_shard(name).await?;
                let _gate = shard.gate.lock().await;
                if !shard.promise(term).await? {
                    return Err(QueueError::Unavailable(format!(
                        "queue {name}: another node is taking it over; retry"
                    )));
                }
                drop(_gate);
                shard
            }
        };
        let best = answers
            .iter()
            .filter(|(_, s)| s.exists)
            .max_by_key(|(_, s)| s.last)
            .map(|(id, s)| (*id, s.clone()));
        if let Some((from, theirs)) = best
            && theirs.last > ours.last
        {
            self.catch_up(&shard, from, &theirs).await?;
        }
        // Hold the gate until the Term record is queued: no replica append of an older owner may interleave.
        let gate = shard.gate.lock().await;
        {
            let mut core = shard.lock();
            let ours_now = core.last;
            if core.promised != term {
                return Err(QueueError::Unavailable(format!(
                    "queue {name}: another node is taking it over; retry"
                )));
            }
            let streams = placement
                .iter()
                .copied()
                .filter(|id| *id != me)
                .map(|peer| {
                    // Writes wait from the start for every holder that answered and either was in sync or holds
                    // everything this node now holds (a new queue: both empty); a lagging one is caught up first.
                    let counted = answers
                        .get(&peer)
                        .is_some_and(|s| s.synced || s.last == ours_now);
                    stream::spawn(shard.clone(), self.streams.clone(), peer, term, counted)
                })
                .collect();
            core.role = Role::Owner { term, streams };
            core.synced = true;
        }
        let written = shard.write(|_| Ok(vec![Record::Term]), |_, _, _| ()).await;
        drop(gate);
        written?;
        tracing::info!(shard = name, term, "serving queue shard");
        shard.deliverable.notify_waiters();
        Ok(shard)
    }

    async fn prepare(&self, id: u64, name: &str, term: u64) -> Option<PrepareResponse> {
        let addr = self.membership.addr(id)?;
        let request = PrepareRequest {
            shard: name.to_owned(),
            from: self.config.id,
            term,
        };
        match self
            .peers
            .post_json(&addr, paths::PREPARE, &request, PEER_TIMEOUT)
            .await
        {
            Ok(answer) => {
                self.membership.mark_seen(id);
                Some(answer)
            }
            Err(e) => {
                tracing::debug!(peer = id, error = %e, "prepare unanswered");
                None
            }
        }
    }

    /// Makes `shard` equal to `from`'s copy described by `theirs` (which promised not to change it any more).
    async fn catch_up(
        &self,
        shard: &Arc<Shard>,
        from: u64,
        theirs: &LogSummary,
    ) -> Result<(), QueueError> {
        let addr = self
            .membership
            .addr(from)
            .ok_or_else(|| QueueError::Unavailable(format!("no address for node {from}")))?;
        let _gate = shard.gate.lock().await;
        let ours = shard.summary();
        let m = match_point(&ours, theirs);
        if ours.last.lsn > m {
            shard.truncate_after(m).await?;
        }
        let deadline = Instant::now() + CATCH_UP_LIMIT;
        while shard.lock().last < theirs.last {
            if Instant::now() > deadline {
                return Err(QueueError::Unavailable(format!(
                    "queue {}: catching up from node {from} took too long",
                    shard.name
                )));
            }
            let next = shard.lock().last.lsn + 1;
            let request = FetchRequest {
                shard: shard.name.clone(),
                from: next,
                max_bytes: 4 << 20,
            };
            let answer: FetchResponse = self
                .peers
                .post_json(&addr, paths::FETCH, &request, PEER_TIMEOUT * 5)
                .await
                .map_err(peer_error)?;
            if let Some((at, snapshot)) = answer.snapshot {
                shard.install_snapshot(at, snapshot).await?;
            }
            let expected = shard.lock().last.lsn + 1;
            if answer.entries.first().is_some_and(|e| e.lsn != expected) {
                return Err(QueueError::Internal(format!(
                    "fetch from node {from} returned a gap at {expected}"
                )));
            }
            if answer.entries.is_empty() && shard.lock().last < theirs.last {
                // Their tail is not durable yet; it will be in a moment.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            shard.append_fetched(&answer.entries).await?;
        }
        tracing::info!(shard = %shard.name, from, last = ?theirs.last, "caught up from a better copy");
        Ok(())
    }

    // ----- peer endpoints -----

    /// `GET /internal/queues/ping`.
    pub fn on_ping(&self) -> PingResponse {
        PingResponse {
            id: self.config.id,
            ring: self.membership.ring_state(),
        }
    }

    /// `POST /internal/queues/prepare`.
    pub async fn on_prepare(&self, request: PrepareRequest) -> Result<PrepareResponse, QueueError> {
        self.membership.mark_seen(request.from);
        // Even without a copy the promise must be recorded: two nodes creating the same new queue in the same
        // term would otherwise both own it.
        let shard = self.open_shard(&request.shard).await?;
        let _gate = shard.gate.lock().await;
        if shard.promise(request.term).await? {
            Ok(PrepareResponse::Promised {
                summary: shard.summary(),
            })
        } else {
            Ok(PrepareResponse::Rejected {
                promised: shard.lock().promised,
            })
        }
    }

    /// `POST /internal/queues/append`.
    pub async fn on_append(
        &self,
        request: crate::wire::AppendRequest,
    ) -> Result<crate::wire::AppendResponse, QueueError> {
        self.membership.mark_seen(request.from);
        let shard = self.open_shard(&request.shard).await?;
        shard.on_append(request).await
    }

    /// `POST /internal/queues/fetch`.
    pub async fn on_fetch(&self, request: FetchRequest) -> Result<FetchResponse, QueueError> {
        let shard = self
            .shard(&request.shard)
            .ok_or_else(|| QueueError::NotFound(format!("no copy of {}", request.shard)))?;
        let first = shard.log.first_lsn().unwrap_or(0);
        if first == 0 || request.from < first {
            let core = shard.lock();
            return Ok(FetchResponse {
                snapshot: Some((core.last, core.queue.snapshot())),
                entries: Vec::new(),
                last: core.last,
            });
        }
        let log = shard.log.clone();
        let (from, max) = (request.from, request.max_bytes.clamp(1, 16 << 20));
        let read = tokio::task::spawn_blocking(move || log.read_from(from, max))
            .await
            .map_err(|e| QueueError::Internal(e.to_string()))?
            .map_err(|e| QueueError::Internal(e.to_string()))?;
        let entries = read
            .iter()
            .map(crate::shard::to_wire)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FetchResponse {
            snapshot: None,
            entries,
            last: shard.lock().last,
        })
    }

    /// `POST /internal/queues/op`.
    pub async fn on_op(&self, request: OpRequest) -> Result<OpResult, QueueError> {
        self.execute(&request.shard, request.op, request.hops).await
    }

    /// `POST /internal/queues/take-over`.
    pub async fn on_take_over(&self, request: TakeOverRequest) -> Result<(), QueueError> {
        if request.epoch > self.membership.epoch() {
            return Err(QueueError::Unavailable(format!(
                "this node has not seen ring epoch {} yet",
                request.epoch
            )));
        }
        self.ensure_owner(&request.shard, false).await.map(|_| ())
    }

    /// `GET /internal/queues/shards`.
    pub fn on_shards(&self) -> ShardList {
        ShardList {
            shards: self.stored_names(),
        }
    }

    /// `POST /internal/ring/adopt`.
    pub fn on_ring_adopt(&self, state: RingState) -> Result<bool, QueueError> {
        self.membership
            .adopt(state)
            .map_err(|e| QueueError::Internal(e.to_string()))
    }

    // ----- background -----

    async fn ping_all(&self) {
        let calls = self.membership.peer_ids().into_iter().filter_map(|id| {
            let addr = self.membership.addr(id)?;
            Some(async move {
                let answer: Result<PingResponse, _> = self
                    .peers
                    .get_json(&addr, paths::PING, self.config.ping_interval * 2)
                    .await;
                (id, answer)
            })
        });
        for (id, answer) in join_all(calls).await {
            let Ok(answer) = answer else { continue };
            if answer.id != id {
                continue;
            }
            self.membership.mark_seen(id);
            if let Some(ring) = answer.ring
                && let Err(e) = self.membership.adopt(ring)
            {
                tracing::warn!(error = %e, "cannot store the ring learned from a peer");
            }
        }
    }

    /// One pass over the local shards: take over what this node should serve, hand off what it should not,
    /// drop copies the ring no longer places here once their new holders have them, count what is unsettled.
    async fn check_ownership(self: &Arc<Self>) {
        let me = self.config.id;
        let epoch = self.membership.epoch();
        let mut pending = 0;
        for shard in self.local_shards() {
            let Ok((placement, _)) = self.placements(&shard.name) else {
                return;
            };
            let acting = self.membership.acting_owner(&placement);
            let (owner_term, streams_ok, streams_match) = {
                let core = shard.lock();
                match &core.role {
                    Role::Owner { term, streams } => {
                        let peers: BTreeSet<u64> = streams.iter().map(|s| s.peer).collect();
                        let wanted: BTreeSet<u64> =
                            placement.iter().copied().filter(|id| *id != me).collect();
                        (
                            Some(*term),
                            streams.iter().all(|s| s.current().counted),
                            peers == wanted,
                        )
                    }
                    Role::Follower => (None, true, true),
                }
            };
            match (acting == Some(me), owner_term) {
                (true, Some(_)) if streams_match => {
                    if !streams_ok {
                        pending += 1;
                    }
                }
                (true, Some(term)) => {
                    // The ring changed the replicas: own it again in a new term with the new placement.
                    pending += 1;
                    shard.step_down(term, false);
                    self.spawn_take_over(&shard.name);
                }
                (true, None) => {
                    pending += 1;
                    self.spawn_take_over(&shard.name);
                }
                (false, Some(_)) => {
                    // Someone earlier in the placement is alive (or the ring moved the shard): hand it over.
                    pending += 1;
                    if let Some(target) = acting {
                        self.spawn_hand_off(&shard.name, target);
                    }
                }
                (false, None) => {
                    if !placement.contains(&me) {
                        pending += 1;
                        self.spawn_retire(&shard, acting);
                    }
                }
            }
        }
        self.pending_handoffs.store(pending, Ordering::Relaxed);
        self.pending_epoch.store(epoch, Ordering::Relaxed);
    }

    /// Claims background work on `name`: false while other work on it runs or a failed attempt is backing off.
    fn claim(&self, name: &str) -> bool {
        let mut work = self
            .background_work
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match work.get(name) {
            Some(None) => false,
            Some(Some(retry_at)) if Instant::now() < *retry_at => false,
            _ => {
                work.insert(name.to_owned(), None);
                true
            }
        }
    }

    /// Ends background work on `name`; a failure backs off for a second before the next attempt.
    fn release(&self, name: &str, succeeded: bool) {
        let mut work = self
            .background_work
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if succeeded {
            work.remove(name);
        } else {
            work.insert(
                name.to_owned(),
                Some(Instant::now() + Duration::from_secs(1)),
            );
        }
    }

    fn spawn_take_over(self: &Arc<Self>, name: &str) {
        if !self.claim(name) {
            return;
        }
        let service = self.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let result = service.ensure_owner(&name, false).await;
            if let Err(e) = &result {
                tracing::debug!(shard = %name, error = %e, "takeover deferred");
            }
            service.release(&name, result.is_ok());
        });
    }

    fn spawn_hand_off(self: &Arc<Self>, name: &str, target: u64) {
        let Some(addr) = self.membership.addr(target) else {
            return;
        };
        if !self.claim(name) {
            return;
        }
        let service = self.clone();
        let request = TakeOverRequest {
            shard: name.to_owned(),
            epoch: self.membership.epoch(),
        };
        tokio::spawn(async move {
            let answer: Result<serde_json::Value, _> = service
                .peers
                .post_json(&addr, paths::TAKE_OVER, &request, ROUTE_PATIENCE)
                .await;
            if let Err(e) = &answer {
                tracing::debug!(shard = %request.shard, target, error = %e, "hand-off not done yet");
            }
            service.release(&request.shard, answer.is_ok());
        });
    }

    /// Deletes this node's copy of a shard the ring moved away, once the acting owner serves it in a later term
    /// with every replica of the new placement in sync.
    fn spawn_retire(self: &Arc<Self>, shard: &Arc<Shard>, acting: Option<u64>) {
        let Some(addr) = acting.and_then(|id| self.membership.addr(id)) else {
            return;
        };
        if !self.claim(&shard.name) {
            return;
        }
        let service = self.clone();
        let shard = shard.clone();
        tokio::spawn(async move {
            let retired = service.try_retire(&shard, &addr).await;
            service.release(&shard.name, retired);
        });
    }

    async fn try_retire(&self, shard: &Arc<Shard>, addr: &str) -> bool {
        let Ok((placement, _)) = self.placements(&shard.name) else {
            return false;
        };
        let request = OpRequest {
            shard: shard.name.clone(),
            op: Op::Info { dead: false },
            hops: MAX_HOPS,
        };
        let Ok(OpResult::Info(info)) = self
            .peers
            .post_json::<_, OpResult>(addr, paths::OP, &request, PEER_TIMEOUT)
            .await
        else {
            return false;
        };
        let ours = shard.lock().last;
        let replicas: BTreeSet<u64> = placement
            .iter()
            .copied()
            .filter(|id| *id != info.owner)
            .collect();
        let in_sync: BTreeSet<u64> = info.in_sync.iter().copied().collect();
        if info.term > ours.term && replicas.is_subset(&in_sync) {
            self.retire(shard).await;
            return true;
        }
        false
    }

    async fn retire(&self, shard: &Arc<Shard>) {
        let _gate = shard.gate.lock().await;
        if shard.lock().owner_term().is_some() {
            return;
        }
        // The ring may have moved the shard back here since the check was scheduled.
        match self.placements(&shard.name) {
            Ok((placement, _)) if !placement.contains(&self.config.id) => {}
            _ => return,
        }
        self.shards
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&shard.name);
        match shard.log.clone().destroy().await {
            Ok(()) => {
                let _ = tokio::fs::remove_dir_all(shard.dir()).await;
                tracing::info!(shard = %shard.name, "dropped a copy the ring moved to other nodes");
            }
            Err(e) => tracing::warn!(shard = %shard.name, error = %e, "cannot delete a moved copy"),
        }
    }
}

/// Acks or nacks (`record` builds the one record) a batch of receipts, all or nothing: any receipt that is not a
/// current delivery refuses the whole batch. Returns how many messages it settled.
async fn settle(
    shard: &Shard,
    name: &str,
    lane: Lane,
    receipts: &[String],
    record: impl FnOnce(Lane, Vec<Receipt>) -> Record,
) -> Result<usize, QueueError> {
    let receipts = parse_receipts(receipts)?;
    shard
        .write(
            |state| {
                let (current, unknown) = state.check_receipts(lane, &receipts);
                if !unknown.is_empty() {
                    return Err(unknown_receipts(name, &unknown));
                }
                Ok(vec![record(lane, current)])
            },
            |_, _, records| match records.first() {
                Some(Record::Ack { receipts, .. } | Record::Requeue { receipts, .. }) => {
                    receipts.len()
                }
                _ => 0,
            },
        )
        .await
}

fn unknown_receipts(queue: &str, unknown: &[Receipt]) -> QueueError {
    let list: Vec<String> = unknown.iter().take(10).map(|r| r.to_string()).collect();
    QueueError::NotFound(format!(
        "{} receipt(s) of {queue} are not current deliveries (already acked, expired and delivered again, or \
         never issued): {}; nothing was changed",
        unknown.len(),
        list.join(", ")
    ))
}

fn unexpected(result: &OpResult) -> QueueError {
    QueueError::Internal(format!("unexpected answer from the owner: {result:?}"))
}

async fn background(service: std::sync::Weak<QueueService>) {
    let mut tick: u64 = 0;
    loop {
        let Some(service) = service.upgrade() else {
            return;
        };
        let interval = service.config.ping_interval;
        service.ping_all().await;
        service.check_ownership().await;
        if tick.is_multiple_of(50) {
            for shard in service.local_shards() {
                shard.purge().await;
            }
        }
        tick += 1;
        drop(service);
        tokio::time::sleep(interval).await;
    }
}

impl QueueService {
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
