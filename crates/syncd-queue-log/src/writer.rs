//! The writer: the one task per log that performs every mutation, in queue order, with group commit.
//!
//! The async side ([`run`]) waits for commands (or the fsync tick), takes everything queued, and hands the batch
//! to a blocking thread ([`Writer::handle`]). Appends of a batch are encoded into one buffer, written with one
//! `write(2)` per segment and made durable with one `fdatasync`, and only then are their callers completed.
//! Truncation, reset, purge, destroy and close first complete the appends queued before them, then run.
//!
//! A failed write or fsync is final: every command still queued or sent later fails.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;

use crate::format;
use crate::segment::{self, SegMeta, io_error};
use crate::{Entry, FsyncPolicy, LogError, Shared};

/// Where a command's result goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, LogError>>;

/// Most commands taken in one batch.
const MAX_BATCH: usize = 4096;

/// Write buffer capacity kept between batches.
const BUF_KEEP: usize = 1 << 20;

/// A command for the writer. `generation` is the log's generation when the command was queued (see
/// [`crate::State::generation`]).
pub(crate) enum Cmd {
    Append {
        entries: Vec<Entry>,
        generation: u64,
        done: Reply<()>,
    },
    TruncateAfter {
        lsn: u64,
        generation: u64,
        done: Reply<()>,
    },
    Reset {
        generation: u64,
        done: Reply<()>,
    },
    PurgeBefore {
        lsn: u64,
        generation: u64,
        done: Reply<usize>,
    },
    Destroy {
        done: Reply<()>,
    },
    Close {
        done: Reply<()>,
    },
}

/// Why the writer no longer accepts work.
#[derive(Debug, Clone)]
pub(crate) enum Dead {
    /// An I/O error: `(kind, message)` of the first one.
    Failed(io::ErrorKind, String),
    /// Destroyed or closed.
    Closed,
}

impl Dead {
    pub(crate) fn error(&self) -> LogError {
        match self {
            Dead::Failed(kind, msg) => LogError::Io(io::Error::new(
                *kind,
                format!("the shard log writer failed and accepts no more writes: {msg}"),
            )),
            Dead::Closed => LogError::Closed,
        }
    }
}

enum Work {
    Batch(Vec<Cmd>),
    Tick,
    Shutdown,
}

/// State owned by the writer (moved into the blocking thread for each batch).
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    /// The segments on disk, including what this batch wrote but has not published yet.
    pub(crate) segments: Vec<SegMeta>,
    /// Open handle on the last segment.
    pub(crate) active: Option<File>,
    /// Encoded records not yet written to `active`.
    buf: Vec<u8>,
    /// Appends whose records are in `buf` or written, waiting for the write/fsync.
    waiting: Vec<Reply<()>>,
    /// Highest lsn written by the pending appends, and their generation.
    pending_last: Option<(u64, u64)>,
    /// Written but not fsynced (Interval policy).
    unsynced: bool,
    dead: Option<Dead>,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, segments: Vec<SegMeta>, active: Option<File>) -> Writer {
        Writer {
            shared,
            segments,
            active,
            buf: Vec::new(),
            waiting: Vec::new(),
            pending_last: None,
            unsynced: false,
            dead: None,
        }
    }

    fn always(&self) -> bool {
        matches!(self.shared.opts.fsync, FsyncPolicy::Always)
    }

    /// Handles one unit of work; returns true when the writer is finished.
    fn handle(&mut self, work: Work) -> bool {
        match work {
            Work::Batch(cmds) => {
                for cmd in cmds {
                    self.command(cmd);
                }
                if let Err(e) = self.flush() {
                    self.fail(e);
                }
            }
            Work::Tick => {
                if self.dead.is_none()
                    && let Err(e) = self.sync_if_unsynced()
                {
                    self.fail(e);
                }
            }
            Work::Shutdown => {
                if self.dead.is_none() {
                    if let Err(e) = self.sync_if_unsynced() {
                        self.fail(e);
                    }
                    self.dead = Some(Dead::Closed);
                }
            }
        }
        self.dead.is_some()
    }

    fn command(&mut self, cmd: Cmd) {
        if let Some(dead) = &self.dead {
            let err = dead.error();
            match cmd {
                Cmd::Append { done, .. }
                | Cmd::TruncateAfter { done, .. }
                | Cmd::Reset { done, .. }
                | Cmd::Destroy { done }
                | Cmd::Close { done } => {
                    let _ = done.send(Err(err));
                }
                Cmd::PurgeBefore { done, .. } => {
                    let _ = done.send(Err(err));
                }
            }
            return;
        }
        match cmd {
            Cmd::Append {
                entries,
                generation,
                done,
            } => match self.append(&entries, generation) {
                Ok(()) => self.waiting.push(done),
                Err(e) => {
                    let _ = done.send(Err(e.duplicate()));
                    self.fail(e);
                }
            },
            Cmd::TruncateAfter {
                lsn,
                generation,
                done,
            } => {
                let r = self
                    .barrier()
                    .and_then(|()| self.truncate_after(lsn, generation));
                self.reply(done, r);
            }
            Cmd::Reset { generation, done } => {
                let r = self.barrier().and_then(|()| self.reset(generation));
                self.reply(done, r);
            }
            Cmd::PurgeBefore {
                lsn,
                generation,
                done,
            } => {
                let r = self
                    .barrier()
                    .and_then(|()| self.purge_before(lsn, generation));
                self.reply(done, r);
            }
            Cmd::Destroy { done } => {
                let r = self.barrier().and_then(|()| self.destroy());
                self.reply(done, r);
            }
            Cmd::Close { done } => {
                let r = self.barrier();
                if r.is_ok() {
                    self.active = None;
                    self.dead = Some(Dead::Closed);
                }
                self.reply(done, r);
            }
        }
    }

    /// Sends the result of a control command; an error also kills the writer.
    fn reply<T>(&mut self, done: Reply<T>, r: Result<T, LogError>) {
        match r {
            Ok(v) => {
                let _ = done.send(Ok(v));
            }
            Err(e) => {
                let _ = done.send(Err(e.duplicate()));
                self.fail(e);
            }
        }
    }

    /// Marks the writer failed (if it is not already dead) and fails every waiting append.
    fn fail(&mut self, e: LogError) {
        let dead = match &self.dead {
            Some(d) => d.clone(),
            None => {
                let d = match &e {
                    LogError::Io(io) => Dead::Failed(io.kind(), io.to_string()),
                    other => Dead::Failed(io::ErrorKind::Other, other.to_string()),
                };
                tracing::error!(dir = ?self.shared.dir, error = %e, "shard log writer failed; the log accepts no more writes");
                self.shared.state().dead = Some(d.clone());
                self.dead = Some(d.clone());
                d
            }
        };
        self.buf.clear();
        self.pending_last = None;
        self.active = None;
        for done in self.waiting.drain(..) {
            let _ = done.send(Err(dead.error()));
        }
    }

    /// Encodes `entries` into the buffer, rolling segments as needed.
    fn append(&mut self, entries: &[Entry], generation: u64) -> Result<(), LogError> {
        let segment_bytes = self.shared.opts.segment_bytes;
        for e in entries {
            let rec = format::record_len(e.payload.len());
            let roll = match self.segments.last() {
                None => true,
                Some(seg) => seg.size + rec > segment_bytes,
            };
            if roll {
                self.roll(e.lsn)?;
            }
            let before = self.buf.len();
            // Payload lengths are checked when the append is queued; this cannot fail.
            format::encode_record(&mut self.buf, e.lsn, e.term, &e.payload).map_err(|_| {
                LogError::PayloadTooLarge {
                    lsn: e.lsn,
                    len: e.payload.len(),
                }
            })?;
            if let Some(seg) = self.segments.last_mut() {
                seg.size += (self.buf.len() - before) as u64;
                seg.last_lsn = e.lsn;
            }
            self.pending_last = Some((e.lsn, generation));
        }
        Ok(())
    }

    /// Writes the buffer to the active segment and, when leaving it, fsyncs it; then starts a new segment.
    fn roll(&mut self, first_lsn: u64) -> Result<(), LogError> {
        if self.segments.last().is_some() {
            self.write_buf()?;
            // The old segment will not be synced by the next fsync (that one covers the new segment).
            self.sync_active()?;
        }
        let file = segment::create_segment(&self.shared.dir, first_lsn, &self.shared.syncer)?;
        self.active = Some(file);
        self.segments.push(SegMeta {
            first_lsn,
            last_lsn: first_lsn,
            size: format::SEGMENT_HEADER_LEN,
        });
        Ok(())
    }

    fn active_path(&self) -> std::path::PathBuf {
        match self.segments.last() {
            Some(seg) => seg.path(&self.shared.dir),
            None => self.shared.dir.clone(),
        }
    }

    fn write_buf(&mut self) -> Result<(), LogError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = self.active_path();
        let file = self.active.as_mut().ok_or_else(|| {
            io_error(
                "write",
                &path,
                io::Error::other("no open segment (an earlier step failed)"),
            )
        })?;
        file.write_all(&self.buf)
            .map_err(|e| io_error("write", &path, e))?;
        self.buf.clear();
        if self.buf.capacity() > BUF_KEEP {
            // Do not keep the memory of one huge batch forever.
            self.buf.shrink_to(BUF_KEEP);
        }
        self.unsynced = true;
        Ok(())
    }

    fn sync_active(&mut self) -> Result<(), LogError> {
        if !self.unsynced {
            return Ok(());
        }
        let path = self.active_path();
        if let Some(file) = &self.active {
            self.shared.syncer.sync_data(file, &path)?;
        }
        self.unsynced = false;
        Ok(())
    }

    fn sync_if_unsynced(&mut self) -> Result<(), LogError> {
        self.write_buf()?;
        self.sync_active()
    }

    /// Writes (and under `Always`, fsyncs) everything buffered, publishes it, and completes the waiting appends.
    fn flush(&mut self) -> Result<(), LogError> {
        if self.dead.is_some() {
            return Ok(());
        }
        self.write_buf()?;
        if self.always() {
            self.sync_active()?;
        }
        let written = self.pending_last.take();
        {
            let mut state = self.shared.state();
            state.segments.clone_from(&self.segments);
            if let Some((lsn, generation)) = written {
                state.processed(generation);
                if generation == state.generation {
                    state.durable = Some(lsn);
                }
            }
        }
        for done in self.waiting.drain(..) {
            let _ = done.send(Ok(()));
        }
        Ok(())
    }

    /// Completes every queued append and makes everything written durable (whatever the policy): control
    /// commands run after this.
    fn barrier(&mut self) -> Result<(), LogError> {
        self.flush()?;
        self.sync_active()
    }

    /// Reopens the handle on the last segment after segments were removed or cut.
    fn reopen_active(&mut self) -> Result<(), LogError> {
        self.active = None;
        self.unsynced = false;
        if let Some(seg) = self.segments.last() {
            self.active = Some(segment::open_for_append(&seg.path(&self.shared.dir))?);
        }
        Ok(())
    }

    /// Removes every record with lsn > `lsn`: whole segments newest first (so a crash leaves a prefix), then the
    /// tail of the segment holding `lsn`.
    fn truncate_after(&mut self, lsn: u64, generation: u64) -> Result<(), LogError> {
        let shared = Arc::clone(&self.shared);
        let _gate = shared.write_gate();
        let dir = &shared.dir;
        self.active = None;
        while let Some(seg) = self.segments.last().copied()
            && seg.first_lsn > lsn
        {
            segment::remove_segment(dir, &seg, &shared.syncer)?;
            self.segments.pop();
        }
        if let Some(seg) = self.segments.last_mut()
            && seg.last_lsn > lsn
        {
            let path = seg.path(dir);
            let mut cut = (format::SEGMENT_HEADER_LEN, seg.first_lsn);
            let scanned = segment::scan(&path, Some(seg.size), |v| {
                if v.header.lsn > lsn {
                    return Ok(std::ops::ControlFlow::Break(()));
                }
                cut = (v.offset + v.header.record_len(), v.header.lsn);
                Ok(std::ops::ControlFlow::Continue(()))
            })?;
            if scanned.end != segment::ScanEnd::Clean {
                return Err(LogError::Corrupt {
                    path,
                    offset: scanned.valid_len,
                    reason: format!("unreadable while truncating: {:?}", scanned.end),
                });
            }
            let file = segment::open_for_append(&path)?;
            file.set_len(cut.0)
                .map_err(|e| io_error("truncate", &path, e))?;
            shared.syncer.sync_all(&file, &path)?;
            seg.size = cut.0;
            seg.last_lsn = cut.1;
        }
        self.reopen_active()?;
        self.publish_after_cut(generation);
        Ok(())
    }

    /// Removes every segment, newest first.
    fn reset(&mut self, generation: u64) -> Result<(), LogError> {
        let shared = Arc::clone(&self.shared);
        let _gate = shared.write_gate();
        self.active = None;
        self.unsynced = false;
        while let Some(seg) = self.segments.last().copied() {
            segment::remove_segment(&shared.dir, &seg, &shared.syncer)?;
            self.segments.pop();
        }
        self.publish_after_cut(generation);
        Ok(())
    }

    /// Publishes the segments after a truncation or reset; the durable lsn is the disk's last lsn unless a newer
    /// truncation or reset is queued (that one will set it).
    fn publish_after_cut(&mut self, generation: u64) {
        let mut state = self.shared.state();
        state.segments.clone_from(&self.segments);
        state.processed(generation);
        if generation == state.generation {
            state.durable = self.segments.last().map(|s| s.last_lsn);
        }
    }

    /// Removes whole segments, oldest first, whose records all have lsn < `lsn`, never the last one.
    fn purge_before(&mut self, lsn: u64, generation: u64) -> Result<usize, LogError> {
        let shared = Arc::clone(&self.shared);
        let _gate = shared.write_gate();
        let removable = self.segments.len().saturating_sub(1);
        let n = self.segments[..removable].partition_point(|s| s.last_lsn < lsn);
        let mut removed_through = None;
        for (i, seg) in self.segments[..n].iter().enumerate() {
            if let Err(e) = segment::remove_segment(&shared.dir, seg, &shared.syncer) {
                // Keep the in-memory view equal to the disk before failing.
                self.segments.drain(..i);
                let mut state = shared.state();
                state.segments.clone_from(&self.segments);
                return Err(e);
            }
            removed_through = Some(seg.last_lsn);
        }
        self.segments.drain(..n);
        let mut state = shared.state();
        state.segments.clone_from(&self.segments);
        if let Some(through) = removed_through {
            state.forget_purged(through, generation);
        }
        state.processed(generation);
        Ok(n)
    }

    /// Deletes the log directory.
    fn destroy(&mut self) -> Result<(), LogError> {
        let shared = Arc::clone(&self.shared);
        let _gate = shared.write_gate();
        self.active = None;
        self.unsynced = false;
        self.segments.clear();
        {
            let mut state = shared.state();
            state.segments.clear();
            state.index.clear();
            state.durable = None;
        }
        let dir = &shared.dir;
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("remove directory", dir, e)),
        }
        shared.syncer.sync_dir(&crate::parent_dir(dir))?;
        self.dead = Some(Dead::Closed);
        Ok(())
    }
}

/// Resolves on the next fsync tick, or never without one.
async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The writer task.
pub(crate) async fn run(mut writer: Writer, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let mut ticker = match writer.shared.opts.fsync {
        FsyncPolicy::Always => None,
        FsyncPolicy::Interval(d) => {
            let d = d.max(Duration::from_millis(1));
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            Some(t)
        }
    };
    let mut batch = Vec::new();
    loop {
        let work = tokio::select! {
            n = rx.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 { Work::Shutdown } else { Work::Batch(std::mem::take(&mut batch)) }
            }
            () = tick(&mut ticker) => Work::Tick,
        };
        let joined = tokio::task::spawn_blocking(move || {
            let finished = writer.handle(work);
            (writer, finished)
        })
        .await;
        match joined {
            Ok((w, finished)) => {
                if finished {
                    return;
                }
                writer = w;
            }
            Err(e) => {
                // Not reachable without a panic in the writer; pending callers see their reply dropped.
                tracing::error!(error = %e, "shard log writer thread failed");
                return;
            }
        }
    }
}
