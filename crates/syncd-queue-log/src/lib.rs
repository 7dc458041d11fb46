//! The Syncd queue shard log: a durable, segmented, append-only log of `(lsn, term, payload)` entries.
//!
//! One [`ShardLog`] stores one queue shard. It is payload-agnostic: the queue layer above assigns lsns (strictly
//! increasing, gaps allowed) and terms, and encodes payloads.
//!
//! # Durability
//! - **Group commit.** One writer task per log performs every mutation in queue order. It takes everything queued,
//!   writes it, does one `fdatasync`, and only then completes those callers: N concurrent appends cost about one
//!   fsync, and no caller completes before the fsync covering it ([`FsyncPolicy::Always`]). With
//!   [`FsyncPolicy::Interval`], appends complete after `write(2)` and a background tick fsyncs.
//! - **Ordering.** [`ShardLog::append`] queues its entries synchronously, before its future is first polled, so
//!   callers that append in some order under their own lock get that order on disk. Truncation, reset, purge,
//!   destroy and close are ordered with appends the same way (queued when their future is first polled).
//! - **Failure is final.** After a failed write or fsync (the page cache state is then unknown) every pending and
//!   later operation fails; success is never reported for data whose fsync failed.
//! - **Recovery.** [`ShardLog::open`] scans every segment. A partial, absurd-length or CRC-failing record at the
//!   end of the last segment is what `kill -9` (or a crash) mid-write leaves: it is truncated away, durably. Any
//!   other damage is [`LogError::Corrupt`].
//!
//! # Layout
//! The directory holds segment files named by their first lsn; the log rolls to a new segment when the active one
//! would exceed [`LogOptions::segment_bytes`]. Whole old segments are deleted by [`ShardLog::purge_before`]. The
//! byte format is in [`format`]. In memory the log keeps, per segment, its first and last lsn and size, and for the
//! whole log the stored lsns as runs plus the term boundaries: never one slot per entry.
//!
//! # Threads
//! File I/O runs on tokio's blocking pool (the writer hands each batch to `spawn_blocking`); the read methods and
//! [`ShardLog::open`] are blocking and belong in `spawn_blocking` or startup code.

pub mod format;
mod index;
mod segment;
mod writer;

use std::fmt;
use std::fs;
use std::future::Future;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::index::LsnIndex;
use crate::segment::{ScanEnd, SegMeta, Syncer};
use crate::writer::{Cmd, Dead, Writer};

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Log sequence number, strictly increasing along the log (gaps allowed).
    pub lsn: u64,
    /// The term (leadership epoch) the entry was written in.
    pub term: u64,
    /// Opaque payload, at most [`format::MAX_PAYLOAD_LEN`] bytes.
    pub payload: Vec<u8>,
}

/// When appended data is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every append completes only after an `fdatasync` covering it (group-committed).
    Always,
    /// Appends complete after `write(2)`; a background tick fsyncs at this interval (at least 1 ms). A process
    /// crash loses nothing; a machine crash can lose up to one interval of acknowledged appends.
    Interval(Duration),
}

/// Options of [`ShardLog::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// Roll to a new segment when a record would take the active one past this size. A segment always holds at
    /// least one record, so a single larger record makes a larger segment. Default 64 MiB.
    pub segment_bytes: u64,
    /// Fsync policy. Default [`FsyncPolicy::Always`].
    pub fsync: FsyncPolicy,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 << 20,
            fsync: FsyncPolicy::Always,
        }
    }
}

/// Errors of the shard log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O error; the message names the operation and the path.
    #[error("shard log I/O error: {0}")]
    Io(io::Error),
    /// Damage that is not a torn tail of the last segment.
    #[error("shard log corrupt at {}, offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged record (or header) in that file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An appended lsn is not greater than the lsn before it (the log's last, or the previous entry of the batch).
    #[error("lsn {got} does not follow lsn {last}: lsns must be strictly increasing")]
    NotMonotonic {
        /// The lsn it must exceed.
        last: u64,
        /// The lsn given.
        got: u64,
    },
    /// A payload larger than [`format::MAX_PAYLOAD_LEN`].
    #[error(
        "payload of lsn {lsn} is {len} bytes, more than the maximum {}",
        format::MAX_PAYLOAD_LEN
    )]
    PayloadTooLarge {
        /// The entry's lsn.
        lsn: u64,
        /// Its payload length.
        len: usize,
    },
    /// The log was closed or destroyed (or its writer is gone).
    #[error("the shard log is closed")]
    Closed,
}

impl LogError {
    /// An equal error (`io::Error` is not `Clone`): the kind and message of an I/O error are kept.
    pub(crate) fn duplicate(&self) -> LogError {
        match self {
            LogError::Io(e) => LogError::Io(io::Error::new(e.kind(), e.to_string())),
            LogError::Corrupt {
                path,
                offset,
                reason,
            } => LogError::Corrupt {
                path: path.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            LogError::NotMonotonic { last, got } => LogError::NotMonotonic {
                last: *last,
                got: *got,
            },
            LogError::PayloadTooLarge { lsn, len } => LogError::PayloadTooLarge {
                lsn: *lsn,
                len: *len,
            },
            LogError::Closed => LogError::Closed,
        }
    }
}

/// The parent directory of `path` (`.` for a bare relative name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// State shared by the handles and the writer.
#[derive(Debug)]
pub(crate) struct State {
    /// Accepted lsns and terms, including entries queued but not yet written.
    pub(crate) index: LsnIndex,
    /// Highest durable lsn (per the policy).
    pub(crate) durable: Option<u64>,
    /// The segments on disk as last published by the writer (readers read exactly these bytes).
    pub(crate) segments: Vec<SegMeta>,
    /// Bumped by every queued truncation or reset. A writer result for an older generation must not overwrite
    /// what a newer truncation or reset already decided (the durable lsn, the index).
    pub(crate) generation: u64,
    /// `(generation, keep lsns <= this, or nothing when None)` of each truncation/reset the writer has not
    /// processed yet.
    pub(crate) cuts: Vec<(u64, Option<u64>)>,
    /// Set once the log accepts no more work.
    pub(crate) dead: Option<Dead>,
}

impl State {
    /// The writer has processed every command of `generation` or older: their cuts are no longer needed.
    pub(crate) fn processed(&mut self, generation: u64) {
        self.cuts.retain(|&(g, _)| g > generation);
    }

    /// A purge queued at `generation` removed every lsn up to `through` from disk: forget them, except lsns that
    /// a later reset or truncation removed and that were accepted again since.
    pub(crate) fn forget_purged(&mut self, through: u64, generation: u64) {
        let mut bound = Some(through);
        for &(g, keep) in &self.cuts {
            if g > generation {
                bound = match (bound, keep) {
                    (Some(b), Some(k)) => Some(b.min(k)),
                    _ => None,
                };
            }
        }
        if let Some(b) = bound {
            self.index.remove_through(b);
        }
    }

    fn check_alive(&self) -> Result<(), LogError> {
        match &self.dead {
            Some(d) => Err(d.error()),
            None => Ok(()),
        }
    }
}

/// What handles and the writer share.
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) opts: LogOptions,
    state: Mutex<State>,
    /// Readers hold it shared while reading files; the writer holds it exclusively while removing or cutting
    /// files. Appends only extend files, and readers read only the published sizes, so appends do not take it.
    gate: RwLock<()>,
    pub(crate) syncer: Syncer,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write_gate(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn dead_error(&self) -> LogError {
        match &self.state().dead {
            Some(d) => d.error(),
            None => LogError::Closed,
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Cmd>,
}

/// A handle on one shard's log. Cheap to clone; all clones share one writer. When the last handle is dropped the
/// writer finishes what is queued and stops.
///
/// At most one `ShardLog` may have a directory open at a time.
#[derive(Clone)]
pub struct ShardLog {
    inner: Arc<Inner>,
}

impl fmt::Debug for ShardLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.inner.shared;
        let state = shared.state();
        f.debug_struct("ShardLog")
            .field("dir", &shared.dir)
            .field("last", &state.index.last())
            .field("durable", &state.durable)
            .field("segments", &state.segments.len())
            .finish()
    }
}

type Reply<T> = oneshot::Receiver<Result<T, LogError>>;

/// Waits for the writer's answer; a dropped answer means the writer stopped.
async fn answer<T>(shared: Arc<Shared>, rx: Reply<T>) -> Result<T, LogError> {
    match rx.await {
        Ok(r) => r,
        Err(_) => Err(shared.dead_error()),
    }
}

impl ShardLog {
    /// Opens or creates the log in `dir` (creating the directory). Blocking; call from `spawn_blocking` or at
    /// startup. Must be called inside a tokio runtime: it spawns the writer task there.
    ///
    /// Recovery scans every segment: a torn, partial or CRC-failing record at the end of the last segment is
    /// truncated away (file truncated and fsynced; a last segment left without records is removed). Damage
    /// anywhere else is [`LogError::Corrupt`].
    pub fn open(dir: impl Into<PathBuf>, opts: LogOptions) -> Result<ShardLog, LogError> {
        let dir = dir.into();
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            LogError::Io(io::Error::other(format!(
                "ShardLog::open({}) must be called inside a tokio runtime: {e}",
                dir.display()
            )))
        })?;
        let syncer = Syncer::default();
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|e| segment::io_error("create directory", &dir, e))?;
            syncer.sync_dir(&parent_dir(&dir))?;
        }
        let recovered = segment::recover(&dir, &syncer)?;
        let active = match recovered.segments.last() {
            Some(seg) => {
                // A killed process may have left written but never fsynced records in the last segment (earlier
                // segments are fsynced when the log rolls): make them durable before calling them durable.
                let path = seg.path(&dir);
                let file = segment::open_for_append(&path)?;
                syncer.sync_data(&file, &path)?;
                Some(file)
            }
            None => None,
        };
        let durable = recovered.index.last().map(|(lsn, _)| lsn);
        let shared = Arc::new(Shared {
            dir,
            opts,
            state: Mutex::new(State {
                index: recovered.index,
                durable,
                segments: recovered.segments.clone(),
                generation: 0,
                cuts: Vec::new(),
                dead: None,
            }),
            gate: RwLock::new(()),
            syncer,
        });
        let writer = Writer::new(Arc::clone(&shared), recovered.segments, active);
        let (tx, rx) = mpsc::unbounded_channel();
        runtime.spawn(writer::run(writer, rx));
        Ok(ShardLog {
            inner: Arc::new(Inner { shared, tx }),
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// Every durable entry, in lsn order (for rebuilding state at startup). Blocking.
    pub fn read_all(&self) -> Result<Vec<Entry>, LogError> {
        self.read_from(0, usize::MAX)
    }

    /// Durable entries with lsn >= `from`, in order, stopping before the payloads would exceed `max_bytes` (but
    /// at least one entry if there is any). If `from` was purged, starts at the first stored lsn. Blocking (reads
    /// files); used to ship records to a lagging replica.
    pub fn read_from(&self, from: u64, max_bytes: usize) -> Result<Vec<Entry>, LogError> {
        let shared = &self.inner.shared;
        let _gate = shared.read_gate();
        let (segments, durable) = {
            let state = shared.state();
            (state.segments.clone(), state.durable)
        };
        let mut out = Vec::new();
        let Some(durable) = durable else {
            return Ok(out);
        };
        let mut bytes = 0usize;
        let start = segments.partition_point(|s| s.last_lsn < from);
        for seg in segments[start..]
            .iter()
            .take_while(|s| s.first_lsn <= durable)
        {
            let path = seg.path(&shared.dir);
            let mut full = false;
            let scanned = segment::scan(&path, Some(seg.size), |v| {
                let lsn = v.header.lsn;
                if lsn < from {
                    return Ok(ControlFlow::Continue(()));
                }
                let len = v.payload.len();
                if lsn > durable
                    || (!out.is_empty()
                        && (bytes >= max_bytes || bytes.saturating_add(len) > max_bytes))
                {
                    full = true;
                    return Ok(ControlFlow::Break(()));
                }
                bytes = bytes.saturating_add(len);
                out.push(Entry {
                    lsn,
                    term: v.header.term,
                    payload: v.payload.to_vec(),
                });
                Ok(ControlFlow::Continue(()))
            })?;
            if scanned.end != ScanEnd::Clean {
                return Err(LogError::Corrupt {
                    path,
                    offset: scanned.valid_len,
                    reason: format!("unreadable record: {:?}", scanned.end),
                });
            }
            if full {
                break;
            }
        }
        Ok(out)
    }

    /// Last accepted entry `(lsn, term)`, including entries queued but not yet durable. `None` when empty.
    pub fn last(&self) -> Option<(u64, u64)> {
        self.inner.shared.state().index.last()
    }

    /// Lowest lsn still stored (or queued). `None` when empty.
    pub fn first_lsn(&self) -> Option<u64> {
        self.inner.shared.state().index.first()
    }

    /// Highest lsn known to be durable under the policy: fsynced for [`FsyncPolicy::Always`], written for
    /// [`FsyncPolicy::Interval`]. Exactly what [`ShardLog::append`] has acknowledged (or would have).
    pub fn durable_lsn(&self) -> Option<u64> {
        self.inner.shared.state().durable
    }

    /// Term of the entry at `lsn` if it is stored (or queued). Answered from in-memory term boundaries.
    pub fn term_at(&self, lsn: u64) -> Option<u64> {
        self.inner.shared.state().index.term_at(lsn)
    }

    /// Appends `entries` (lsns strictly increasing and greater than [`ShardLog::last`]; gaps allowed) and returns
    /// a future that resolves when they are durable under the policy.
    ///
    /// The entries are validated and queued synchronously, inside this call, before the future is first polled:
    /// callers that call `append` in some order (under their own lock) get that order on disk, and
    /// [`ShardLog::last`] reflects them at once. Validation errors ([`LogError::NotMonotonic`],
    /// [`LogError::PayloadTooLarge`]) and a dead log are reported by the future; nothing is queued then. An empty
    /// `entries` is a barrier: it resolves once everything queued before it is durable.
    pub fn append(
        &self,
        entries: Vec<Entry>,
    ) -> impl Future<Output = Result<(), LogError>> + Send + 'static {
        let queued = self.queue_append(entries);
        let shared = Arc::clone(&self.inner.shared);
        async move { answer(shared, queued?).await }
    }

    fn queue_append(&self, entries: Vec<Entry>) -> Result<Reply<()>, LogError> {
        let mut state = self.inner.shared.state();
        state.check_alive()?;
        let mut prev = state.index.last().map(|(lsn, _)| lsn);
        for e in &entries {
            format::check_payload_len(e.payload.len()).map_err(|_| LogError::PayloadTooLarge {
                lsn: e.lsn,
                len: e.payload.len(),
            })?;
            if let Some(last) = prev
                && e.lsn <= last
            {
                return Err(LogError::NotMonotonic { last, got: e.lsn });
            }
            prev = Some(e.lsn);
        }
        for e in &entries {
            state.index.push(e.lsn, e.term);
        }
        let (done, rx) = oneshot::channel();
        let cmd = Cmd::Append {
            entries,
            generation: state.generation,
            done,
        };
        self.send(&mut state, cmd)?;
        Ok(rx)
    }

    /// Sends a command to the writer (under the state lock, so queue order is lock order).
    fn send(&self, state: &mut State, cmd: Cmd) -> Result<(), LogError> {
        if self.inner.tx.send(cmd).is_err() {
            // The writer is gone (its runtime shut down): nothing queued will ever be written.
            state.dead.get_or_insert(Dead::Closed);
            return Err(state.dead.as_ref().map_or(LogError::Closed, Dead::error));
        }
        Ok(())
    }

    /// Queues a truncation or reset: the in-memory view changes at once, the files when the writer gets to it.
    fn queue_cut(&self, keep: Option<u64>) -> Result<Reply<()>, LogError> {
        let mut state = self.inner.shared.state();
        state.check_alive()?;
        let generation = state.generation + 1;
        let (done, rx) = oneshot::channel();
        let cmd = match keep {
            Some(lsn) => Cmd::TruncateAfter {
                lsn,
                generation,
                done,
            },
            None => Cmd::Reset { generation, done },
        };
        self.send(&mut state, cmd)?;
        state.generation = generation;
        state.cuts.push((generation, keep));
        match keep {
            Some(lsn) => state.index.truncate_after(lsn),
            None => state.index.clear(),
        }
        let last = state.index.last().map(|(lsn, _)| lsn);
        state.durable = match (state.durable, last) {
            (Some(d), Some(l)) => Some(d.min(l)),
            _ => None,
        };
        Ok(rx)
    }

    /// Removes every entry with lsn > `lsn` (the divergent suffix after a failover), durably. Ordered with
    /// appends; [`ShardLog::last`] reflects it as soon as the call is first polled.
    pub async fn truncate_after(&self, lsn: u64) -> Result<(), LogError> {
        let rx = self.queue_cut(Some(lsn))?;
        answer(Arc::clone(&self.inner.shared), rx).await
    }

    /// Removes everything (before installing a snapshot), durably. The next append may start at any lsn.
    pub async fn reset(&self) -> Result<(), LogError> {
        let rx = self.queue_cut(None)?;
        answer(Arc::clone(&self.inner.shared), rx).await
    }

    /// Deletes whole segments whose entries all have lsn < `lsn`, oldest first, never the segment being written
    /// (the last one). Ordered with appends. Returns the number of segments deleted.
    pub async fn purge_before(&self, lsn: u64) -> Result<usize, LogError> {
        let rx = {
            let mut state = self.inner.shared.state();
            state.check_alive()?;
            let (done, rx) = oneshot::channel();
            let cmd = Cmd::PurgeBefore {
                lsn,
                generation: state.generation,
                done,
            };
            self.send(&mut state, cmd)?;
            rx
        };
        answer(Arc::clone(&self.inner.shared), rx).await
    }

    /// Queues a command after which the log accepts nothing more.
    fn queue_final(
        &self,
        make: impl FnOnce(writer::Reply<()>) -> Cmd,
    ) -> Result<Reply<()>, LogError> {
        let mut state = self.inner.shared.state();
        state.check_alive()?;
        let (done, rx) = oneshot::channel();
        self.send(&mut state, make(done))?;
        state.dead = Some(Dead::Closed);
        Ok(rx)
    }

    /// Deletes the whole log directory (this node no longer holds the shard). Appends queued before complete
    /// first; every operation after fails with [`LogError::Closed`], on every clone.
    pub async fn destroy(self) -> Result<(), LogError> {
        let rx = self.queue_final(|done| Cmd::Destroy { done })?;
        answer(Arc::clone(&self.inner.shared), rx).await
    }

    /// Completes and fsyncs everything queued, then stops the writer and closes the files, so the directory may
    /// be opened again. Every operation after fails with [`LogError::Closed`], on every clone.
    pub async fn close(self) -> Result<(), LogError> {
        let rx = self.queue_final(|done| Cmd::Close { done })?;
        answer(Arc::clone(&self.inner.shared), rx).await
    }

    /// Number of fsyncs (files and directories) this log has issued since it was opened. For tests.
    #[doc(hidden)]
    pub fn fsync_count(&self) -> u64 {
        self.inner.shared.syncer.count()
    }

    /// Makes the next fsync fail (unit tests).
    #[cfg(test)]
    pub(crate) fn fail_next_fsync(&self) {
        self.inner.shared.syncer.fail_next();
    }
}

#[cfg(test)]
mod tests;
