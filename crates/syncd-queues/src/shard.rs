//! One queue shard on one node: its durable log, the delivery state rebuilt from it, its owner term and role.
//!
//! The owner writes through [`Shard::write`]: plan records against the state, assign lsns, apply, queue them to
//! the log (group commit) and to every replica stream, all under one short lock so log order is plan order; then,
//! outside the lock, wait for the fsync and for every replica the owner counts as in sync. Replicas write through
//! [`Shard::on_append`], serialized by the shard's gate.
//!
//! An fsync that fails is fatal for the process (the page cache state is unknown afterwards; retrying can
//! report data durable that is not): the node aborts and recovers from what is on disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use syncd_queue_core::{Record, ShardState, Snapshot, decode, encode};
use syncd_queue_log::{Entry, LogOptions, ShardLog};
use tokio::sync::Notify;

use crate::error::QueueError;
use crate::membership::persist;
use crate::stream::{Progress, StreamHandle};
use crate::wire::{AppendRequest, AppendResponse, LogSummary, Position, WireEntry};

/// What a node does for a shard.
pub(crate) enum Role {
    /// Holds a copy; accepts appends from the owner of the promised term.
    Follower,
    /// Serves the shard in `term`, streaming to its replicas.
    Owner {
        /// The owner term.
        term: u64,
        /// One stream per other placement member.
        streams: Vec<StreamHandle>,
    },
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
    /// Highest term promised to a would-be owner (persisted before answering).
    pub promised: u64,
    pub role: Role,
    /// This copy has every acknowledged entry (set by the owner's streams; false after a restart).
    pub synced: bool,
}

impl Core {
    fn push_entry(&mut self, lsn: u64, term: u64) {
        if self.terms.last().map(|(_, t)| *t) != Some(term) {
            self.terms.push((lsn, term));
        }
        self.last = Position { term, lsn };
    }

    /// The owner term, if this node owns the shard.
    pub fn owner_term(&self) -> Option<u64> {
        match &self.role {
            Role::Owner { term, .. } => Some(*term),
            Role::Follower => None,
        }
    }
}

/// One shard.
pub(crate) struct Shard {
    pub name: String,
    dir: PathBuf,
    pub log: ShardLog,
    core: Mutex<Core>,
    /// Serializes replica appends, truncations and takeovers of this shard.
    pub gate: tokio::sync::Mutex<()>,
    /// Woken when a message may have become deliverable (long-polls wait on it).
    pub deliverable: Notify,
}

/// Aborts the process after a storage failure (see the module doc).
pub(crate) fn fatal(what: &str, error: &dyn std::fmt::Display) -> ! {
    tracing::error!(%error, "{what}: storage failed; stopping the node so it recovers from disk");
    std::process::abort()
}

fn to_entry(w: &WireEntry) -> Entry {
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
        let promised = match std::fs::read_to_string(dir.join("promised")) {
            Ok(text) => text.trim().parse().unwrap_or(0),
            Err(_) => 0,
        };
        let shard = Shard {
            name: name.to_owned(),
            dir: dir.to_owned(),
            log,
            core: Mutex::new(Core {
                queue: ShardState::default(),
                last: Position::default(),
                terms: Vec::new(),
                promised,
                role: Role::Follower,
                synced: false,
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
            synced: core.synced,
            exists: core.last.lsn > 0,
        }
    }

    /// Raises the promised term to `term` durably; false if `term` is not above the current promise.
    /// The caller holds the gate, so a promise never interleaves with a replica append.
    pub async fn promise(&self, term: u64) -> Result<bool, QueueError> {
        {
            let mut core = self.lock();
            if term <= core.promised {
                return Ok(false);
            }
            core.promised = term;
            if core.owner_term().is_some_and(|t| t < term) {
                tracing::info!(shard = %self.name, term, "a newer owner asked for the shard; stepping down");
                core.role = Role::Follower;
            }
        }
        self.persist_promise().await?;
        Ok(true)
    }

    async fn persist_promise(&self) -> Result<(), QueueError> {
        let path = self.dir.join("promised");
        let promised = self.lock().promised;
        tokio::task::spawn_blocking(move || persist(&path, promised.to_string().as_bytes()))
            .await
            .map_err(|e| QueueError::Internal(e.to_string()))?
            .map_err(|e| QueueError::Internal(format!("cannot persist the promised term: {e}")))
    }

    /// Stops owning if still owner in `term`: deposed (a replica follows a newer owner, so this copy may miss
    /// what that owner acknowledged) or by choice (the ring changed the replicas; this copy still has everything).
    pub fn step_down(&self, term: u64, deposed: bool) {
        let mut core = self.lock();
        if core.owner_term() == Some(term) {
            tracing::info!(shard = %self.name, term, deposed, "no longer serving the shard");
            core.role = Role::Follower;
            core.synced = !deposed;
        }
    }

    /// The owner's write path (see the module doc). `plan` returns the records to write (or an error, or nothing);
    /// `after` computes the answer from the state right after they were applied, given the first record's lsn.
    pub async fn write<T>(
        &self,
        plan: impl FnOnce(&ShardState) -> Result<Vec<Record>, QueueError>,
        after: impl FnOnce(&ShardState, u64, &[Record]) -> T,
    ) -> Result<T, QueueError> {
        let (durable, waits, last, out) = {
            let mut core = self.lock();
            let Role::Owner { term, .. } = &core.role else {
                return Err(QueueError::Unavailable(format!(
                    "this node no longer serves queue {}; retry",
                    self.name
                )));
            };
            let term = *term;
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
                    term,
                    record: record.clone(),
                })
                .collect();
            for entry in &wire {
                core.queue.apply(entry.lsn, &entry.record);
                core.push_entry(entry.lsn, term);
            }
            let durable = self.log.append(wire.iter().map(to_entry).collect());
            let shared = Arc::new(wire);
            let mut waits = Vec::new();
            if let Role::Owner { streams, .. } = &core.role {
                for stream in streams {
                    stream.push(shared.clone());
                    waits.push(stream.progress());
                }
            }
            let out = after(&core.queue, first, &records);
            (durable, waits, core.last.lsn, out)
        };
        if let Err(e) = durable.await {
            fatal("appending to a queue shard log", &e);
        }
        for mut progress in waits {
            loop {
                let now: Progress = *progress.borrow_and_update();
                if now.acked >= last || !now.counted {
                    break;
                }
                if progress.changed().await.is_err() {
                    return Err(QueueError::Unavailable(format!(
                        "queue {} changed owner during the write; it may or may not have been stored, retry",
                        self.name
                    )));
                }
            }
        }
        Ok(out)
    }

    /// A replica's side of the owner's stream.
    pub async fn on_append(&self, req: AppendRequest) -> Result<AppendResponse, QueueError> {
        let _gate = self.gate.lock().await;
        {
            let mut core = self.lock();
            if req.term < core.promised {
                return Ok(AppendResponse::Stale {
                    promised: core.promised,
                });
            }
            if core.owner_term().is_some_and(|t| t < req.term) {
                core.role = Role::Follower;
            }
            if core.owner_term().is_some() {
                // Two owners in one term cannot happen (promises); refuse rather than corrupt.
                return Ok(AppendResponse::Stale {
                    promised: core.promised,
                });
            }
        }
        if self.promise(req.term).await? {
            tracing::debug!(shard = %self.name, term = req.term, "following a new owner");
        }
        let promised = self.lock().promised;
        if req.term < promised {
            return Ok(AppendResponse::Stale { promised });
        }
        if let Some(snapshot) = req.snapshot {
            self.install_snapshot(req.prev, snapshot).await?;
        } else {
            let summary = self.summary();
            let matches = req.prev.lsn == 0
                || crate::log_match::term_at(&summary, req.prev.lsn) == Some(req.prev.term);
            if !matches {
                self.lock().synced = false;
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
        let mut core = self.lock();
        core.synced = req.in_sync && core.last == sent_up_to;
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

    /// Appends entries fetched from a better copy during a takeover (the caller holds the gate).
    pub async fn append_fetched(&self, entries: &[WireEntry]) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        let durable = {
            let mut core = self.lock();
            let durable = self.log.append(entries.iter().map(to_entry).collect());
            for entry in entries {
                core.queue.apply(entry.lsn, &entry.record);
                core.push_entry(entry.lsn, entry.term);
            }
            durable
        };
        if let Err(e) = durable.await {
            fatal("appending fetched entries", &e);
        }
        Ok(())
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
