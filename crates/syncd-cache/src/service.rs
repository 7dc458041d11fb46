//! The cache role of one node: client operations, the home side, probes, write-backs and the membership loop.
//!
//! A client operation runs against this node's line ([`LineStore`]); a miss or a write that needs ownership
//! becomes a request to the key's home (this node or another), which runs it in its [`Directory`] and probes
//! other holders as needed. A home that refuses (another view, not the home any more, still in its grace period)
//! did not run the request, so the operation is retried from the start until its deadline. A request that fails
//! any other way is abandoned (the client gets an error; a write may or may not have taken effect).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use syncd_api::status::CacheRoleStatus;
use syncd_cache_core::{
    Home, LineState, Outcome, Policy, ProbeAnswer, ProbeKind, ReadStep, Reply, Request, WriteStep,
};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::directory::{Directory, ProbeJob};
use crate::error::CacheError;
use crate::membership::{self, Membership, PeerSource, View};
use crate::metrics::{CacheMetrics, KindLabel};
use crate::peers::PeerClient;
use crate::store::{HomeRef, LineStore, StoreConfig, WriteBack};
use crate::wire::{
    self, AnswerHeader, Pong, ProbeHeader, Refusal, ReplyHeader, RequestHeader, Sender,
};

/// Settings of the cache role.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// This node's id.
    pub id: u64,
    /// How peers are found.
    pub source: PeerSource,
    /// Lines held before LRU eviction.
    pub capacity: usize,
    /// Keys homed here (directory entries) before the least recently used droppable ones are forgotten.
    pub home_capacity: usize,
    /// Bytes of keys and values held in lines before LRU eviction (0: no byte bound).
    pub max_bytes: u64,
    /// Every write goes to the home, which keeps the newest value (no Modified lines).
    pub write_through: bool,
    /// How long a copy may be served without asking the home again.
    pub lease: Duration,
    /// How often peers are pinged.
    pub ping_interval: Duration,
    /// A peer silent this long leaves the view.
    pub failure_timeout: Duration,
    /// How often the headless Service is resolved again (DNS discovery).
    pub dns_refresh: Duration,
    /// Virtual nodes per peer on the ring.
    pub vnodes: u32,
    /// How long one client operation may take, retries included.
    pub op_timeout: Duration,
    /// Fault injection for tests: peer addresses dialled through other addresses (a fault-injecting proxy).
    pub dial_overrides: std::collections::BTreeMap<String, String>,
}

impl CacheConfig {
    /// Defaults for everything but identity and discovery.
    pub fn new(id: u64, source: PeerSource) -> CacheConfig {
        CacheConfig {
            dial_overrides: std::collections::BTreeMap::new(),
            id,
            source,
            capacity: 10_000,
            home_capacity: 10_000,
            max_bytes: 0,
            write_through: false,
            lease: Duration::from_secs(5),
            ping_interval: Duration::from_millis(500),
            failure_timeout: Duration::from_secs(3),
            dns_refresh: Duration::from_secs(5),
            vnodes: syncd_ring::DEFAULT_VNODES,
            op_timeout: Duration::from_secs(15),
        }
    }

    /// The lease as the home counts it: longer than the holder's, for clock-rate differences and transit.
    fn home_lease(&self) -> Duration {
        self.lease + self.lease / 10 + Duration::from_millis(100)
    }
}

/// A read's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRead {
    /// The value, `None` when the key has none.
    pub value: Option<Bytes>,
    /// Served from this node's copy without asking the home.
    pub hit: bool,
    /// The state of this node's copy after the read (`I` if none was kept).
    pub state: LineState,
}

/// `GET /v1/cache`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Lines this node holds at most.
    pub capacity: u64,
    /// Lines holding a copy.
    pub entries: u64,
    /// Reads served from a local copy.
    pub hits: u64,
    /// Reads that asked the home.
    pub misses: u64,
    /// Lines evicted by LRU.
    pub evictions: u64,
    /// Invalidations this node sent as a home.
    pub invalidations_sent: u64,
    /// Invalidations this node received as a holder.
    pub invalidations_received: u64,
    /// Bytes of keys and values held (a byte bound applies when `max_bytes` > 0).
    pub bytes: u64,
    /// The byte bound (0: none).
    pub max_bytes: u64,
    /// Modified lines written back.
    pub writebacks: u64,
    /// Copies dropped when their lease ran out.
    pub expirations: u64,
    /// Recalls sent as a home.
    pub recalls_sent: u64,
    /// Recalls received as a holder.
    pub recalls_received: u64,
    /// Keys homed here with a directory entry.
    pub directory_entries: u64,
    /// Possibly dirty copies given up by this home.
    pub lost_lines: u64,
    /// Whether writes go through to the home.
    pub write_through: bool,
}

/// A request's failure, as the operation loop sees it.
enum Asked {
    /// The home did not run it: try again.
    Refused(Refusal),
    /// It failed; it may or may not have run.
    Failed(CacheError),
}

/// The cache role.
pub struct CacheService {
    config: CacheConfig,
    membership: Membership,
    store: Mutex<LineStore>,
    directory: Directory,
    peers: PeerClient,
    metrics: CacheMetrics,
    /// Signalled whenever a line's request or write-back finishes (operations that found it busy retry).
    changed: Notify,
    /// Asks the membership loop for a ping round now.
    refresh_now: Notify,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for CacheService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheService")
            .field("id", &self.config.id)
            .finish_non_exhaustive()
    }
}

impl CacheService {
    /// Starts the role: the membership loop pings peers at once.
    pub async fn start(config: CacheConfig) -> anyhow::Result<Arc<CacheService>> {
        let now = Instant::now();
        // Incarnations and the first transaction number grow across restarts (wall clock in microseconds).
        let inc = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        let metrics = CacheMetrics::default();
        let policy = Policy {
            write_through: config.write_through,
        };
        let home = Home::new(inc, policy, config.home_lease().as_millis() as u64);
        let grace = config.home_lease() + config.failure_timeout;
        let membership = Membership::new(
            config.id,
            inc,
            config.source.clone(),
            config.vnodes,
            config.failure_timeout,
            grace,
            now,
        );
        let store = LineStore::new(
            StoreConfig {
                capacity: config.capacity,
                max_bytes: config.max_bytes,
                lease: config.lease,
                policy,
            },
            metrics.clone(),
        );
        let directory = Directory::new(home, config.home_capacity, now, metrics.clone());
        let (stop, _) = watch::channel(false);
        let peers = PeerClient::with_dial_overrides(config.dial_overrides.clone());
        let service = Arc::new(CacheService {
            config,
            membership,
            store: Mutex::new(store),
            directory,
            peers,
            metrics,
            changed: Notify::new(),
            refresh_now: Notify::new(),
            stop,
            tasks: Mutex::new(Vec::new()),
        });
        service.metrics.peers.set(1);
        let task = tokio::spawn(service.clone().membership_loop());
        service.lock_tasks().push(task);
        tracing::info!(id = service.config.id, inc, "cache role started");
        Ok(service)
    }

    /// The metrics, for the node's registry.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.metrics
    }

    /// Whether the start-up grace period has passed.
    pub fn ready(&self) -> bool {
        self.membership.warmed_up(Instant::now())
    }

    /// Reads `key`.
    pub async fn get(self: &Arc<Self>, key: Bytes) -> Result<CacheRead, CacheError> {
        match self.detached(key, None).await? {
            Done::Read(read) => Ok(read),
            Done::Written => Err(CacheError::Unavailable("unexpected answer".into())),
        }
    }

    /// Writes `value` under `key`; returns once every other copy is invalidated.
    pub async fn put(self: &Arc<Self>, key: Bytes, value: Bytes) -> Result<(), CacheError> {
        self.detached(key, Some(Some(value))).await.map(|_| ())
    }

    /// Deletes `key` everywhere.
    pub async fn delete(self: &Arc<Self>, key: Bytes) -> Result<(), CacheError> {
        self.detached(key, Some(None)).await.map(|_| ())
    }

    /// Runs an operation in its own task: a client that hangs up must not leave a request half-done (its line
    /// would stay busy with nobody to finish it).
    async fn detached(
        self: &Arc<Self>,
        key: Bytes,
        write: Option<Option<Bytes>>,
    ) -> Result<Done, CacheError> {
        let this = self.clone();
        tokio::spawn(async move { this.operate(&key, write).await })
            .await
            .map_err(|e| CacheError::Unavailable(format!("the cache operation failed: {e}")))?
    }

    /// This node's view of `key`: its copy's state and the key's home.
    pub fn state(&self, key: &Bytes) -> (LineState, Option<u64>) {
        let state = self.lock_store().state(key, Instant::now());
        let home = self.membership.view().home_of(key).map(|h| h.id);
        (state, home)
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        let m = &self.metrics;
        let store = self.lock_store();
        CacheStats {
            capacity: store.config().capacity as u64,
            entries: store.entries() as u64,
            hits: m.hits.get(),
            misses: m.misses.get(),
            evictions: m.evictions.get(),
            invalidations_sent: m.invalidations_sent.get(),
            invalidations_received: m.invalidations_received.get(),
            bytes: store.bytes(),
            max_bytes: store.config().max_bytes,
            writebacks: m.writebacks.get(),
            expirations: m.expirations.get(),
            recalls_sent: m.recalls_sent.get(),
            recalls_received: m.recalls_received.get(),
            directory_entries: m.directory_entries.get().max(0) as u64,
            lost_lines: m.lost.get(),
            write_through: self.config.write_through,
        }
    }

    /// The cache part of `/v1/status`.
    pub fn status(&self) -> CacheRoleStatus {
        let view = self.membership.view();
        CacheRoleStatus {
            epoch: view.epoch,
            view: format!("{:016x}", view.id),
            peers: view.members.keys().copied().collect(),
            ready: self.ready(),
        }
    }

    /// This process's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.membership.inc()
    }

    /// This node's identity, for pings.
    pub fn pong(&self) -> Pong {
        Pong {
            id: self.config.id,
            inc: self.membership.inc(),
            view: self.membership.view().id,
        }
    }

    /// Stops the loops and writes every Modified line back to its home (bounded), so a graceful restart loses
    /// no write.
    pub async fn shutdown(self: &Arc<Self>) {
        self.stop.send_replace(true);
        let writebacks = self.lock_store().evict_dirty();
        let count = writebacks.len();
        let handles: Vec<_> = writebacks
            .into_iter()
            .map(|wb| tokio::spawn(self.clone().write_back(wb)))
            .collect();
        let all = futures::future::join_all(handles);
        if tokio::time::timeout(self.config.op_timeout.min(Duration::from_secs(5)), all)
            .await
            .is_err()
        {
            tracing::warn!(
                count,
                "not every Modified line was written back before stopping"
            );
        }
        for task in self.lock_tasks().drain(..) {
            task.abort();
        }
    }

    /// One client operation: `None` reads, `Some(value)` writes or (with `None`) deletes.
    async fn operate(
        self: &Arc<Self>,
        key: &Bytes,
        write: Option<Option<Bytes>>,
    ) -> Result<Done, CacheError> {
        let deadline = Instant::now() + self.config.op_timeout;
        let mut backoff = Duration::from_millis(5);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = Instant::now();
            if now >= deadline {
                return Err(CacheError::Timeout(
                    "the key's home did not answer in time".into(),
                ));
            }
            let view = self.membership.view();
            let Some(home) = view.home_of(key) else {
                return Err(CacheError::Unavailable("no cache peer is live".into()));
            };
            let (request, kind) = {
                let mut store = self.lock_store();
                match &write {
                    None => {
                        let (step, wbs) = store.read(key, now, home);
                        self.spawn_write_backs(wbs);
                        match step {
                            ReadStep::Hit(value, state) => {
                                return Ok(Done::Read(CacheRead {
                                    value: Some(value),
                                    hit: true,
                                    state,
                                }));
                            }
                            ReadStep::Miss(request) => (Some(request), "read"),
                            ReadStep::Busy => (None, "read"),
                        }
                    }
                    Some(value) => {
                        let (step, wbs) = store.write(key, value.clone(), now, home);
                        self.spawn_write_backs(wbs);
                        let kind = if value.is_some() { "write" } else { "delete" };
                        match step {
                            WriteStep::Done => return Ok(Done::Written),
                            WriteStep::Send(request) => (Some(request), kind),
                            WriteStep::Busy => (None, kind),
                        }
                    }
                }
            };
            let Some(request) = request else {
                // Another operation or a write-back of this key is in flight here: wait for it.
                let _ = tokio::time::timeout_at(deadline.into(), changed).await;
                continue;
            };
            let asked = self.ask(key, home, &view, request, kind, deadline).await;
            let reply = match asked {
                Ok(reply) => reply,
                Err(failure) => {
                    if let Some(wb) = self.lock_store().abandon(key) {
                        self.spawn_write_backs(vec![wb]);
                    }
                    self.changed.notify_waiters();
                    match failure {
                        Asked::Failed(e) => return Err(e),
                        Asked::Refused(refusal) => {
                            if let Refusal::WrongView { .. } | Refusal::NotHome = refusal {
                                self.refresh_now.notify_one();
                            }
                            tokio::time::sleep(
                                backoff.min(deadline.saturating_duration_since(Instant::now())),
                            )
                            .await;
                            backoff = (backoff * 2).min(Duration::from_millis(200));
                            continue;
                        }
                    }
                }
            };
            let (outcome, wbs) = self.lock_store().on_reply(key, reply);
            self.spawn_write_backs(wbs);
            self.changed.notify_waiters();
            return match outcome {
                Outcome::Value(value, state) => Ok(Done::Read(CacheRead {
                    value: Some(value),
                    hit: false,
                    state,
                })),
                Outcome::NotFound => Ok(Done::Read(CacheRead {
                    value: None,
                    hit: false,
                    state: LineState::I,
                })),
                Outcome::Written(_) => Ok(Done::Written),
                Outcome::WrittenBack | Outcome::Unexpected | Outcome::Stale => Err(
                    CacheError::Unavailable("the key's home answered out of turn; retry".into()),
                ),
            };
        }
    }

    /// Sends `request` for `key` to `home` (in-process when it is this node) and measures the round trip.
    async fn ask(
        self: &Arc<Self>,
        key: &Bytes,
        home: HomeRef,
        view: &View,
        request: Request<Bytes>,
        kind: &'static str,
        deadline: Instant,
    ) -> Result<Reply<Bytes>, Asked> {
        let started = Instant::now();
        let from = Sender {
            id: self.config.id,
            inc: self.membership.inc(),
            view: view.id,
        };
        let header = if home.id == self.config.id {
            self.serve(key, from, request).await
        } else {
            let Some(addr) = view.addr(home.id) else {
                return Err(Asked::Refused(Refusal::NotHome));
            };
            let (request, value) = wire::split_request(request);
            let frame = wire::encode(&RequestHeader { from, request }, key, value.as_ref());
            let timeout = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .peers
                .post_frame(addr, "/internal/cache/request", frame, timeout)
                .await
                .map_err(|e| Asked::Failed(CacheError::Unavailable(e.to_string())))?;
            let (header, _, value): (ReplyHeader, _, _) = wire::decode(answer)
                .map_err(|e| Asked::Failed(CacheError::Unavailable(e.to_string())))?;
            match header {
                ReplyHeader::Reply(reply) => ServeResult::Reply(wire::join_reply(reply, value)),
                ReplyHeader::Refused(refusal) => ServeResult::Refused(refusal),
            }
        };
        self.metrics
            .request_rtt
            .get_or_create(&KindLabel { kind })
            .observe(started.elapsed().as_secs_f64());
        match header {
            ServeResult::Reply(reply) => Ok(reply),
            ServeResult::Refused(r) => Err(Asked::Refused(r)),
            ServeResult::Failed(e) => Err(Asked::Failed(e)),
        }
    }

    /// Runs a request as the key's home (from this node or a peer).
    pub async fn serve(
        self: &Arc<Self>,
        key: &Bytes,
        from: Sender,
        request: Request<Bytes>,
    ) -> ServeResult {
        let now = Instant::now();
        let view = self.membership.view();
        if from.view != view.id {
            // One of us has a stale view: look again soon.
            self.refresh_now.notify_one();
            return ServeResult::Refused(Refusal::WrongView { view: view.id });
        }
        if view.home_of(key).map(|h| h.id) != Some(self.config.id) {
            return ServeResult::Refused(Refusal::NotHome);
        }
        if !self.membership.servable(key, now) {
            return ServeResult::Refused(Refusal::Warming);
        }
        let (reply, probes) = self.directory.submit(key, from.id, from.inc, request, now);
        self.spawn_probes(probes);
        match tokio::time::timeout(self.config.op_timeout, reply).await {
            Ok(Ok(reply)) => ServeResult::Reply(reply),
            // The key left this home while the request waited: it never ran.
            Ok(Err(_)) => ServeResult::Refused(Refusal::NotHome),
            Err(_) => ServeResult::Failed(CacheError::Timeout(
                "the key's home is still waiting for a holder".into(),
            )),
        }
    }

    /// Answers a home's probe about this node's copy.
    pub fn answer_probe(&self, key: &Bytes, probe: syncd_cache_core::Probe) -> ProbeAnswer<Bytes> {
        let answer = self.lock_store().on_probe(key, probe);
        self.changed.notify_waiters();
        answer
    }

    fn spawn_probes(self: &Arc<Self>, probes: Vec<ProbeJob>) {
        for job in probes {
            tokio::spawn(self.clone().probe(job));
        }
    }

    /// Delivers one probe, retrying until the holder answers or its lease has run out.
    async fn probe(self: Arc<Self>, job: ProbeJob) {
        let kind = match job.probe.kind {
            ProbeKind::Invalidate => "invalidate",
            ProbeKind::Downgrade => "downgrade",
        };
        let mut backoff = Duration::from_millis(10);
        loop {
            if !self.directory.waits_on(&job.key, job.to) {
                return;
            }
            let started = Instant::now();
            let answered = if job.to == self.config.id {
                Some((
                    self.membership.inc(),
                    self.answer_probe(&job.key, job.probe),
                ))
            } else {
                self.send_probe(&job).await
            };
            let now = Instant::now();
            if let Some((inc, answer)) = answered {
                self.metrics
                    .probe_rtt
                    .get_or_create(&KindLabel { kind })
                    .observe(started.elapsed().as_secs_f64());
                let more =
                    self.directory
                        .on_answer(&job.key, job.to, inc, job.probe.txn, answer, now);
                self.spawn_probes(more);
                return;
            }
            let now_ms = self.directory.now_ms(now);
            if now_ms >= job.deadline {
                // Its lease has run out: it serves nothing any more, so the transaction goes on without it.
                tracing::info!(
                    holder = job.to,
                    "cache holder silent past its lease; giving it up"
                );
                let more = self.directory.on_unreachable(&job.key, job.to, now);
                self.spawn_probes(more);
                return;
            }
            let left = Duration::from_millis(job.deadline - now_ms);
            tokio::time::sleep(backoff.min(left)).await;
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }

    async fn send_probe(&self, job: &ProbeJob) -> Option<(u64, ProbeAnswer<Bytes>)> {
        let addr = self.membership.addr_of(job.to)?;
        let from = Sender {
            id: self.config.id,
            inc: self.membership.inc(),
            view: self.membership.view().id,
        };
        let frame = wire::encode(
            &ProbeHeader {
                from,
                probe: job.probe,
            },
            &job.key,
            None,
        );
        let answer = self
            .peers
            .post_frame(
                &addr,
                "/internal/cache/probe",
                frame,
                Duration::from_secs(1),
            )
            .await
            .ok()?;
        let (header, _, value): (AnswerHeader, _, _) = wire::decode(answer).ok()?;
        Some((header.inc, wire::join_answer(header.answer, value)))
    }

    fn spawn_write_backs(self: &Arc<Self>, writebacks: Vec<WriteBack>) {
        for wb in writebacks {
            tokio::spawn(self.clone().write_back(wb));
        }
    }

    /// Writes an evicted Modified line back to the home that granted it. It is retried for as long as that home
    /// is the key's home: giving up while it still is would let it believe an older value. Once the key's home
    /// changed, the line is dropped (the new home starts without the key).
    async fn write_back(self: Arc<Self>, wb: WriteBack) {
        let mut backoff = Duration::from_millis(10);
        loop {
            let view = self.membership.view();
            if view.home_of(&wb.key) != Some(wb.home) {
                tracing::warn!(
                    home = wb.home.id,
                    "a Modified cache line's home left; the line is dropped"
                );
                self.lock_store().writeback_failed(&wb.key);
                self.changed.notify_waiters();
                return;
            }
            let deadline = Instant::now() + self.config.op_timeout;
            match self
                .ask(
                    &wb.key,
                    wb.home,
                    &view,
                    wb.request.clone(),
                    "writeback",
                    deadline,
                )
                .await
            {
                Ok(reply) => {
                    let _ = self.lock_store().on_reply(&wb.key, reply);
                    self.changed.notify_waiters();
                    return;
                }
                Err(_) => {
                    self.refresh_now.notify_one();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    /// Pings peers every interval (or when asked), resolves DNS every refresh, and adopts view changes.
    async fn membership_loop(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let mut last_dns: Option<Instant> = None;
        loop {
            if let PeerSource::Dns { service, port } = self.membership.source()
                && last_dns.is_none_or(|t| t.elapsed() >= self.config.dns_refresh)
            {
                last_dns = Some(Instant::now());
                match membership::resolve(service, *port).await {
                    Ok(addrs) => self.membership.set_candidates(addrs),
                    Err(e) => tracing::warn!(service, error = %e, "cannot resolve the cache peers"),
                }
            }
            let timeout = self.config.ping_interval.max(Duration::from_millis(200));
            let pings = self.membership.candidates().into_iter().map(|addr| {
                let peers = self.peers.clone();
                async move {
                    let pong = peers
                        .get_json::<Pong>(&addr, "/internal/cache/ping", timeout)
                        .await;
                    (addr, pong)
                }
            });
            for (addr, pong) in futures::future::join_all(pings).await {
                if let Ok(pong) = pong {
                    self.membership.record_pong(&addr, pong, Instant::now());
                }
            }
            if let Some(view) = self.membership.refresh(Instant::now()) {
                self.adopt(&view);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.ping_interval) => {}
                _ = self.refresh_now.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// A new view: copies whose home changed are dropped, directory entries this node no longer homes are
    /// forgotten.
    fn adopt(&self, view: &View) {
        let me = self.config.id;
        let dropped = self.lock_store().drop_moved(|key| view.home_of(key));
        let forgotten = self
            .directory
            .retain_homed(|key| view.home_of(key).map(|h| h.id) == Some(me));
        self.metrics.peers.set(view.members.len() as i64);
        self.changed.notify_waiters();
        tracing::info!(
            epoch = view.epoch,
            peers = ?view.members.keys().collect::<Vec<_>>(),
            dropped,
            forgotten,
            "cache membership changed"
        );
    }

    fn lock_store(&self) -> MutexGuard<'_, LineStore> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_tasks(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What an operation finished with.
enum Done {
    Read(CacheRead),
    Written,
}

/// What a home made of a request.
#[derive(Debug)]
pub enum ServeResult {
    /// It ran.
    Reply(Reply<Bytes>),
    /// It did not run.
    Refused(Refusal),
    /// It failed (it may still run).
    Failed(CacheError),
}
