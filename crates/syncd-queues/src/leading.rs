//! A shard's leader at run time: the [`LeaderEngine`] of `syncd-queue-engine` behind a lock, its replication
//! streams, and the high watermark writers wait on. The engine decides; this module carries its decisions out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use syncd_queue_engine::control::{ControlCommand, ShardControl};
use syncd_queue_engine::leader::{ControlVerdict, LeaderEngine, Start, Timing};
use tokio::sync::oneshot;

use crate::error::QueueError;
use crate::shard::{Role, Shard, fatal, to_entry};
use crate::stream::{self, StreamContext, StreamHandle};
use crate::wire::WireEntry;
use syncd_queue_core::Record;

/// Writers waiting for their acknowledgement, by lsn: each is woken once, when the high watermark passes its lsn
/// or the leadership ends (not every waiter on every move, which costs a wake-up per writer per group commit).
#[derive(Default)]
struct Waiters {
    high_watermark: u64,
    deposed: bool,
    waiting: BTreeMap<u64, Vec<oneshot::Sender<bool>>>,
}

/// One shard's leadership in one epoch.
pub(crate) struct Leading {
    /// The epoch.
    pub epoch: u64,
    engine: Mutex<LeaderEngine>,
    waiters: Mutex<Waiters>,
    deposed: AtomicBool,
    streams: Mutex<BTreeMap<u64, StreamHandle>>,
    started: Instant,
}

impl Leading {
    fn engine(&self) -> MutexGuard<'_, LeaderEngine> {
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn streams(&self) -> MutexGuard<'_, BTreeMap<u64, StreamHandle>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, moved: Option<u64>) {
        let Some(hw) = moved else { return };
        let done = {
            let mut waiters = self.waiters();
            if hw <= waiters.high_watermark {
                return;
            }
            waiters.high_watermark = hw;
            let later = waiters.waiting.split_off(&(hw + 1));
            std::mem::replace(&mut waiters.waiting, later)
        };
        for sender in done.into_values().flatten() {
            let _ = sender.send(true);
        }
    }

    /// Entries up to `last` were queued locally; they go to every stream (called under the shard's lock, so in
    /// lsn order).
    pub fn appended(&self, last: u64, entries: Arc<Vec<WireEntry>>) {
        self.engine().appended(last);
        for stream in self.streams().values() {
            stream.push(entries.clone());
        }
    }

    /// Entries up to `lsn` are durable here.
    pub fn local_durable(&self, lsn: u64) {
        let moved = self.engine().local_durable(lsn);
        self.publish(moved);
    }

    /// `peer` holds everything up to `lsn` durably.
    pub fn peer_acked(&self, peer: u64, lsn: u64) {
        let now = self.now_ms();
        let moved = self.engine().peer_acked(peer, lsn, now);
        self.publish(moved);
    }

    /// Whether this leadership ended.
    pub fn is_deposed(&self) -> bool {
        self.deposed.load(Ordering::Relaxed)
    }

    /// Ends this leadership: streams stop, waiting writers fail.
    pub fn depose(&self) {
        if self.deposed.swap(true, Ordering::Relaxed) {
            return;
        }
        self.streams().clear();
        let waiting = {
            let mut waiters = self.waiters();
            waiters.deposed = true;
            std::mem::take(&mut waiters.waiting)
        };
        for sender in waiting.into_values().flatten() {
            let _ = sender.send(false);
        }
    }

    /// Waits until `lsn` is acknowledged (the high watermark covers it) or the leadership ends.
    pub async fn acknowledged(&self, lsn: u64, shard: &str) -> Result<(), QueueError> {
        let receiver = {
            let mut waiters = self.waiters();
            if waiters.high_watermark >= lsn {
                return Ok(());
            }
            if waiters.deposed {
                return Err(changed_leader(shard));
            }
            let (sender, receiver) = oneshot::channel();
            waiters.waiting.entry(lsn).or_default().push(sender);
            receiver
        };
        match receiver.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(changed_leader(shard)),
            Err(_) => Err(gone(shard)),
        }
    }

    /// The in-sync change to propose now, if any.
    pub fn tick(&self) -> Option<ControlCommand> {
        let now = self.now_ms();
        self.engine().tick(now)
    }

    /// The committed in-sync set as this leader last saw it.
    pub fn isr(&self) -> BTreeSet<u64> {
        self.engine().isr().clone()
    }

    /// A newer control record: false if this leadership ended (the caller makes the shard a follower). New
    /// replicas (a ring move) get a stream.
    pub fn control_changed(
        self: &Arc<Self>,
        shard: &Arc<Shard>,
        context: &Arc<StreamContext>,
        record: &ShardControl,
        fenced: &BTreeSet<u64>,
    ) -> bool {
        let now = self.now_ms();
        let verdict = self.engine().control_changed(record, fenced, now);
        match verdict {
            ControlVerdict::StepDown => {
                self.depose();
                false
            }
            ControlVerdict::Lead(moved) => {
                self.sync_streams(shard, context);
                self.publish(moved);
                true
            }
        }
    }

    fn sync_streams(self: &Arc<Self>, shard: &Arc<Shard>, context: &Arc<StreamContext>) {
        if self.is_deposed() {
            return;
        }
        let replicas: BTreeSet<u64> = self.engine().replicas().collect();
        let mut streams = self.streams();
        streams.retain(|peer, _| replicas.contains(peer));
        for peer in replicas {
            streams.entry(peer).or_insert_with(|| {
                stream::spawn(shard.clone(), context.clone(), peer, self.clone())
            });
        }
    }
}

fn changed_leader(shard: &str) -> QueueError {
    QueueError::Indeterminate(format!(
        "queue {shard} changed leader during the operation; it may or may not have been carried out"
    ))
}

fn gone(shard: &str) -> QueueError {
    QueueError::Indeterminate(format!(
        "queue {shard}: its leader stopped during the operation; it may or may not have been carried out"
    ))
}

/// Starts leading `shard` in `record.epoch`: writes the epoch's marker (a `Term` record), starts the engine and a
/// stream per replica. Holds the shard's gate, so no replica append interleaves.
pub(crate) async fn lead(
    shard: &Arc<Shard>,
    context: &Arc<StreamContext>,
    record: &ShardControl,
    fenced: &BTreeSet<u64>,
    timing: Timing,
) -> Result<Arc<Leading>, QueueError> {
    let _gate = shard.gate.lock().await;
    let epoch = record.epoch;
    let (leading, marker, durable) = {
        let mut core = shard.lock();
        if core.known_epoch > epoch {
            return Err(QueueError::Unavailable(format!(
                "queue {}: epoch {epoch} is already over",
                shard.name
            )));
        }
        if let Some(current) = core.leading()
            && current.epoch >= epoch
        {
            return Ok(current.clone());
        }
        core.follow();
        core.known_epoch = epoch;
        let marker = WireEntry {
            lsn: core.last.lsn + 1,
            term: epoch,
            record: Record::Term,
        };
        core.queue.apply(marker.lsn, &marker.record);
        core.push_entry(marker.lsn, epoch);
        let durable = shard.log.append(vec![to_entry(&marker)]);
        let engine = LeaderEngine::new(
            &shard.name,
            context.me,
            record,
            fenced,
            Start {
                epoch_start: marker.lsn,
                durable: 0,
                now_ms: 0,
            },
            timing,
        );
        let leading = Arc::new(Leading {
            epoch,
            engine: Mutex::new(engine),
            waiters: Mutex::new(Waiters::default()),
            deposed: AtomicBool::new(false),
            streams: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
        });
        leading.engine().appended(marker.lsn);
        leading.sync_streams(shard, context);
        core.role = Role::Leader(leading.clone());
        (leading, marker.lsn, durable)
    };
    if let Err(e) = durable.await {
        fatal("writing an epoch marker", &e);
    }
    // Everything before the marker was durable before it (the log writes in order).
    leading.local_durable(marker);
    tracing::info!(shard = %shard.name, epoch, "leading queue shard");
    shard.deliverable.notify_waiters();
    Ok(leading)
}
