//! One queue shard on one node: its durable log, the delivery state rebuilt from it, and its role.
//!
//! The leader writes through [`Shard::write`]: plan records against the state, assign lsns, apply, queue them to
//! the log (group commit) and to every replica stream, all under one short lock so log order is plan order; then,
//! outside the lock, wait until the leader's high watermark covers them ([`crate::leading`]). Replicas write
//! through [`Shard::on_append`], serialized by the shard's gate, and refuse epochs older than the newest they know.
//!
//! An fsync that fails is fatal for the process (the page cache state is unknown afterwards; retrying can
//! report data durable that is not): the node aborts and recovers from what is on disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use syncd_queue_core::{Record, ShardState, Snapshot, decode, encode};
use syncd_queue_log::{Entry, LogOptions, ShardLog};
use tokio::sync::Notify;

use crate::error::QueueError;
use crate::leading::Leading;
use crate::wire::{AppendRequest, AppendResponse, LogSummary, Position, WireEntry};

/// What a node does for a shard.
pub(crate) enum Role {
    /// Holds a copy; accepts appends of the newest epoch it knows (or a newer one).
    Follower,
    /// Leads the shard in an epoch the control group gave it.
    Leader(Arc<Leading>),
}

/// The mutable part of a shard.
pub(crate) struct Core {
    pub queue: ShardState,
    /// The last entry (including entries queued but not yet durable). The log knows it too, but a truncation or
    /// reset reaches the log's index only when its future runs, while `queue` is rebuilt after it: keeping the
    /// position here, changed together with `queue` under this lock, gives readers (streams, fetches, snapshots)
    /// a consistent (state, position) pair.
    pub last: Position,
    /// `(first lsn, term)` runs, ascending (kept here for the same reason as `last`).
    pub terms: Vec<(u64, u64)>,
    /// The newest leader epoch this copy knows: appends of older ones are refused.
    pub known_epoch: u64,
    pub role: Role,
}

impl Core {
    /// Records the entry at `lsn` written in `term` (with `queue`, under the same lock).
    pub fn push_entry(&mut self, lsn: u64, term: u64) {
        if self.terms.last().map(|(_, t)| *t) != Some(term) {
            self.terms.push((lsn, term));
        }
        self.last = Position { term, lsn };
    }

    /// The leader state, if this node leads the shard.
    pub fn leading(&self) -> Option<&Arc<Leading>> {
        match &self.role {
            Role::Leader(leading) => Some(leading),
            Role::Follower => None,
        }
    }

    /// Stops leading (if leading), failing what waits for acknowledgements.
    pub fn follow(&mut self) {
        if self.leading().is_some() {
            tracing::info!(epoch = self.known_epoch, "no longer leading a queue shard");
        }
        if let Role::Leader(leading) = &self.role {
            leading.depose();
        }
        self.role = Role::Follower;
    }
}

/// One shard.
pub(crate) struct Shard {
    pub name: String,
    dir: PathBuf,
    pub log: ShardLog,
    core: Mutex<Core>,
    /// Serializes replica appends, truncations and the start of leading.
    pub gate: tokio::sync::Mutex<()>,
    /// Woken when a message may have become deliverable (long-polls wait on it).
    pub deliverable: Notify,
}

/// Aborts the process after a storage failure (see the module doc).
pub(crate) fn fatal(what: &str, error: &dyn std::fmt::Display) -> ! {
    tracing::error!(%error, "{what}: storage failed; stopping the node so it recovers from disk");
    std::process::abort()
}

pub(crate) fn to_entry(w: &WireEntry) -> Entry {
    Entry {
        lsn: w.lsn,
        term: w.term,
        payload: encode(&w.record),
    }
}

pub(crate) fn to_wire(e: &Entry) -> Result<WireEntry, QueueError> {
    let record = decode(&e.payload)
        .map_err(|err| QueueError::Internal(format!("log entry {} unreadable: {err}", e.lsn)))?;
    Ok(WireEntry {
        lsn: e.lsn,
        term: e.term,
        record,
    })
}

impl Shard {
    /// Opens (or creates) the shard stored in `dir` and rebuilds its state from the log. Blocking.
    pub fn open(name: &str, dir: &Path, options: LogOptions) -> Result<Shard, QueueError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| QueueError::Internal(format!("cannot create {}: {e}", dir.display())))?;
        let log = ShardLog::open(dir.join("log"), options).map_err(|e| {
            QueueError::Internal(format!("cannot open the log of shard {name}: {e}"))
        })?;
        let shard = Shard {
            name: name.to_owned(),
            dir: dir.to_owned(),
            log,
            core: Mutex::new(Core {
                queue: ShardState::default(),
                last: Position::default(),
                terms: Vec::new(),
                known_epoch: 0,
                role: Role::Follower,
            }),
            gate: tokio::sync::Mutex::new(()),
            deliverable: Notify::new(),
        };
        shard.reload()?;
        Ok(shard)
    }

    /// Rebuilds the in-memory state from the log (after opening or truncating).
    fn reload(&self) -> Result<(), QueueError> {
        let entries = self
            .log
            .read_all()
            .map_err(|e| QueueError::Internal(format!("cannot read shard {}: {e}", self.name)))?;
        let mut core = self.lock();
        core.queue = ShardState::default();
        core.terms.clear();
        core.last = Position::default();
        for entry in &entries {
            let wire = to_wire(entry)?;
            core.queue.apply(wire.lsn, &wire.record);
            core.push_entry(wire.lsn, wire.term);
        }
        // What a restart leaves is the log: its last entry's epoch is the newest this copy can be sure it knew.
        core.known_epoch = core.known_epoch.max(core.last.term);
        Ok(())
    }

    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shard's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What this copy holds.
    pub fn summary(&self) -> LogSummary {
        let core = self.lock();
        LogSummary {
            last: core.last,
            first_lsn: self.log.first_lsn().unwrap_or(0),
            terms: core.terms.clone(),
        }
    }

    /// The leader's write path (see the module doc). `plan` returns the records to write (or an error, or
    /// nothing); `after` computes the answer from the state right after they were applied, given the first
    /// record's lsn.
    pub async fn write<T>(
        &self,
        plan: impl FnOnce(&ShardState) -> Result<Vec<Record>, QueueError>,
        after: impl FnOnce(&ShardState, u64, &[Record]) -> T,
    ) -> Result<T, QueueError> {
        let (leading, last, out) = {
            let mut core = self.lock();
            let Role::Leader(leading) = &core.role else {
                return Err(QueueError::Unavailable(format!(
                    "this node no longer leads queue {}; retry",
                    self.name
                )));
            };
            let leading = leading.clone();
            let records = plan(&core.queue)?;
            if records.is_empty() {
                return Ok(after(&core.queue, 0, &records));
            }
            let first = core.last.lsn + 1;
            let wire: Vec<WireEntry> = records
                .iter()
                .enumerate()
                .map(|(i, record)| WireEntry {
                    lsn: first + i as u64,
                    term: leading.epoch,
                    record: record.clone(),
                })
                .collect();
            for entry in &wire {
                core.queue.apply(entry.lsn, &entry.record);
                core.push_entry(entry.lsn, leading.epoch);
            }
            let last = core.last.lsn;
            let durable = self.log.append(wire.iter().map(to_entry).collect());
            leading.appended(last, Arc::new(wire));
            // Reported by a task of its own: a caller that goes away must not leave the high watermark behind.
            let reporter = leading.clone();
            tokio::spawn(async move {
                if let Err(e) = durable.await {
                    fatal("appending to a queue shard log", &e);
                }
                reporter.local_durable(last);
            });
            let out = after(&core.queue, first, &records);
            (leading, last, out)
        };
        leading.acknowledged(last, &self.name).await?;
        Ok(out)
    }

    /// A replica's side of the leader's stream. `control_epoch` is the shard's epoch in this node's control
    /// state: an append of an older epoch is refused, whatever this copy's log shows.
    pub async fn on_append(
        &self,
        req: AppendRequest,
        control_epoch: u64,
    ) -> Result<AppendResponse, QueueError> {
        let _gate = self.gate.lock().await;
        {
            let mut core = self.lock();
            core.known_epoch = core.known_epoch.max(control_epoch);
            if req.epoch < core.known_epoch {
                return Ok(AppendResponse::Stale {
                    epoch: core.known_epoch,
                });
            }
            if let Some(leading) = core.leading() {
                if leading.epoch >= req.epoch {
                    // Two leaders in one epoch cannot happen (the control group names one); refuse rather than
                    // corrupt.
                    return Ok(AppendResponse::Stale {
                        epoch: core.known_epoch,
                    });
                }
                tracing::info!(shard = %self.name, epoch = req.epoch, "a newer leader exists; following it");
                core.follow();
            }
            core.known_epoch = req.epoch;
        }
        if let Some(snapshot) = req.snapshot {
            self.install_snapshot(req.prev, snapshot).await?;
        } else {
            let summary = self.summary();
            let matches = req.prev.lsn == 0
                || crate::log_match::term_at(&summary, req.prev.lsn) == Some(req.prev.term);
            if !matches {
                return Ok(AppendResponse::Mismatch {
                    summary: self.summary(),
                });
            }
        }
        if let Some(first) = req.entries.first()
            && first.lsn != req.prev.lsn + 1
        {
            return Err(QueueError::Invalid(format!(
                "entries start at {} after {}",
                first.lsn, req.prev.lsn
            )));
        }
        // As in raft: entries this copy already holds (same lsn and term) are skipped; the suffix is cut only at
        // the first entry that conflicts, never because this copy is merely longer (a late duplicate append).
        let summary = self.summary();
        let fresh = req
            .entries
            .iter()
            .position(|e| crate::log_match::term_at(&summary, e.lsn) != Some(e.term))
            .unwrap_or(req.entries.len());
        let new_entries = &req.entries[fresh..];
        if let Some(first) = new_entries.first()
            && summary.last.lsn >= first.lsn
        {
            self.truncate_after(first.lsn - 1).await?;
        }
        let sent_up_to = req.entries.last().map_or(req.prev, |e| Position {
            term: e.term,
            lsn: e.lsn,
        });
        // Queue and apply under one lock, like the owner's write path, so `last` never lags the log.
        let durable = {
            let mut core = self.lock();
            let durable = (!new_entries.is_empty())
                .then(|| self.log.append(new_entries.iter().map(to_entry).collect()));
            for entry in new_entries {
                core.queue.apply(entry.lsn, &entry.record);
                core.push_entry(entry.lsn, entry.term);
            }
            durable
        };
        if let Some(durable) = durable
            && let Err(e) = durable.await
        {
            fatal("appending to a replica log", &e);
        }
        Ok(AppendResponse::Accepted { last: sent_up_to })
    }

    /// Replaces everything with `snapshot` as the entry at `at`.
    pub async fn install_snapshot(
        &self,
        at: Position,
        snapshot: Snapshot,
    ) -> Result<(), QueueError> {
        if let Err(e) = self.log.reset().await {
            fatal("resetting a shard log", &e);
        }
        let record = Record::Snapshot(snapshot);
        let entry = Entry {
            lsn: at.lsn,
            term: at.term,
            payload: encode(&record),
        };
        if let Err(e) = self.log.append(vec![entry]).await {
            fatal("installing a shard snapshot", &e);
        }
        let mut core = self.lock();
        core.queue = ShardState::default();
        core.queue.apply(at.lsn, &record);
        core.terms.clear();
        core.push_entry(at.lsn, at.term);
        Ok(())
    }

    /// Drops the entries after `lsn` (a divergent suffix) and rebuilds the state.
    pub async fn truncate_after(&self, lsn: u64) -> Result<(), QueueError> {
        tracing::info!(shard = %self.name, lsn, "dropping a divergent log suffix");
        if let Err(e) = self.log.truncate_after(lsn).await {
            fatal("truncating a shard log", &e);
        }
        self.reload()
    }

    /// Deletes log segments that hold only acknowledged messages.
    pub async fn purge(&self) {
        let below = {
            let core = self.lock();
            core.queue.min_live_id().unwrap_or(core.last.lsn + 1)
        };
        match self.log.purge_before(below).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(shard = %self.name, segments = n, "purged acknowledged segments")
            }
            Err(e) => tracing::warn!(shard = %self.name, error = %e, "purging segments failed"),
        }
    }
}

impl Shard {
    /// Waits until `lsn` is acknowledged by this node's current leadership.
    pub async fn acknowledged(&self, lsn: u64) -> Result<(), QueueError> {
        let leading = self.lock().leading().cloned();
        match leading {
            Some(leading) => leading.acknowledged(lsn, &self.name).await,
            None => Err(QueueError::Unavailable(format!(
                "this node no longer leads queue {}; retry",
                self.name
            ))),
        }
    }

    /// Makes the shard a follower if `leading` is still its leadership.
    pub fn step_down(&self, leading: &Arc<Leading>) {
        let mut core = self.lock();
        if core.leading().is_some_and(|l| Arc::ptr_eq(l, leading)) {
            core.follow();
        }
    }
}
