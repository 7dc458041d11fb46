//! The owner's replication stream to one replica.
//!
//! New entries arrive from the write path in lsn order and are sent as they come (before the owner's own fsync
//! completes: the two run in parallel). When the replica is behind, diverged or was unreachable, the stream finds
//! the match point ([`crate::log_match`]), sends what is missing from the owner's log on disk (or a snapshot
//! when the owner already deleted those entries), and returns to live sending once it reaches the owner's tail.
//!
//! Progress is published on a watch channel: `acked` (durable on the replica up to this lsn) and `counted`
//! (whether the owner's writes wait for this replica). A replica that fails a call stops being counted at once
//! (the owner goes on with its live replicas) and is counted again only once it has caught up. The replica learns
//! whether it is counted with every append, and only a counted copy may later take over without the others.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::log_match::{match_point, term_at};
use crate::membership::Membership;
use crate::peers::{PeerClient, PeerError};
use crate::shard::{Shard, to_wire};
use crate::wire::{AppendRequest, AppendResponse, Position, WireEntry, paths};

/// How long one append call may take before the replica stops being counted.
const APPEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Payload bytes kept in memory for a replica that is behind; beyond this they are read back from disk.
const MAX_BUFFER_BYTES: usize = 64 << 20;
/// Most entries per append call.
const MAX_BATCH: usize = 512;
/// About the most payload bytes per append call.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// Where a replica stands, as the owner sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Durable on the replica up to this lsn.
    pub acked: u64,
    /// The owner's writes wait for this replica.
    pub counted: bool,
}

/// What every stream of a node shares.
pub(crate) struct StreamContext {
    pub me: u64,
    pub peers: PeerClient,
    pub membership: Arc<Membership>,
}

/// A running stream; dropping it stops the stream.
pub(crate) struct StreamHandle {
    pub peer: u64,
    tx: mpsc::UnboundedSender<Arc<Vec<WireEntry>>>,
    progress: watch::Receiver<Progress>,
    task: JoinHandle<()>,
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StreamHandle {
    /// Queues entries for the replica (called under the shard lock, so in lsn order).
    pub fn push(&self, entries: Arc<Vec<WireEntry>>) {
        let _ = self.tx.send(entries);
    }

    /// A receiver of the replica's progress.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// The replica's progress now.
    pub fn current(&self) -> Progress {
        *self.progress.borrow()
    }
}

/// Starts streaming `shard` (owned in `term`) to `peer`. `counted`: whether writes wait for it from the start
/// (a replica that promised this term while in sync).
pub(crate) fn spawn(
    shard: Arc<Shard>,
    context: Arc<StreamContext>,
    peer: u64,
    term: u64,
    counted: bool,
) -> StreamHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let (progress_tx, progress) = watch::channel(Progress { acked: 0, counted });
    let task = tokio::spawn(
        Stream {
            shard,
            context,
            peer,
            term,
            rx,
            progress: progress_tx,
            buffer: VecDeque::new(),
            buffer_bytes: 0,
            known: None,
            snapshot_needed: false,
            announce: false,
            last_success: std::time::Instant::now(),
        }
        .run(),
    );
    StreamHandle {
        peer,
        tx,
        progress,
        task,
    }
}

struct Stream {
    shard: Arc<Shard>,
    context: Arc<StreamContext>,
    peer: u64,
    term: u64,
    rx: mpsc::UnboundedReceiver<Arc<Vec<WireEntry>>>,
    progress: watch::Sender<Progress>,
    buffer: VecDeque<WireEntry>,
    buffer_bytes: usize,
    /// The replica's last entry known to match ours.
    known: Option<Position>,
    snapshot_needed: bool,
    /// The replica just became counted: tell it with an empty append.
    announce: bool,
    last_success: std::time::Instant,
}

enum Next {
    Send(AppendRequest),
    /// Caught up: wait for new entries.
    Idle,
    /// Entries exist but are not durable on the owner yet: try again shortly.
    Later,
}

impl Stream {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.shard.lock().owner_term() != Some(self.term) {
                return;
            }
            self.drain();
            let next = match self.next().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(shard = %self.shard.name, peer = self.peer, error = %e, "replication stream stalled");
                    self.set_uncounted();
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            let request = match next {
                Next::Send(request) => request,
                Next::Idle => {
                    let newly = self.progress.send_if_modified(|p| {
                        let changed = !p.counted;
                        p.counted = true;
                        changed
                    });
                    if newly {
                        // Tell the replica now that it is counted, so an idle shard has an in-sync copy.
                        self.announce = true;
                        continue;
                    }
                    match self.rx.recv().await {
                        Some(batch) => self.extend(&batch),
                        None => return,
                    }
                    continue;
                }
                Next::Later => {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(10), self.wait_for_more()).await;
                    continue;
                }
            };
            let Some(addr) = self.context.membership.addr(self.peer) else {
                self.set_uncounted();
                tokio::time::sleep(backoff).await;
                continue;
            };
            let answer: Result<AppendResponse, PeerError> = self
                .context
                .peers
                .post_json(&addr, paths::APPEND, &request, APPEND_TIMEOUT)
                .await;
            match answer {
                Ok(AppendResponse::Accepted { last }) => {
                    backoff = Duration::from_millis(50);
                    self.last_success = std::time::Instant::now();
                    self.context.membership.mark_seen(self.peer);
                    self.snapshot_needed = false;
                    self.known = Some(last);
                    self.progress.send_if_modified(|p| {
                        let changed = p.acked != last.lsn;
                        p.acked = last.lsn;
                        changed
                    });
                }
                Ok(AppendResponse::Mismatch { summary }) => {
                    self.context.membership.mark_seen(self.peer);
                    let ours = self.shard.summary();
                    let m = match_point(&ours, &summary);
                    let first = ours.first_lsn.max(1);
                    if m + 1 < first {
                        self.snapshot_needed = true;
                        self.known = None;
                    } else {
                        self.known = Some(Position {
                            lsn: m,
                            term: term_at(&ours, m).unwrap_or(0),
                        });
                    }
                }
                Ok(AppendResponse::Stale { promised }) => {
                    tracing::info!(shard = %self.shard.name, peer = self.peer, promised, "replica follows a newer owner");
                    self.shard.step_down(self.term, true);
                    return;
                }
                Err(e) => {
                    // A replica that is slow or briefly unreachable but not declared dead stays counted: writes
                    // wait for it rather than being acknowledged without it while it still believes it is in sync.
                    let membership = &self.context.membership;
                    let given_up = !membership.alive(self.peer)
                        || self.last_success.elapsed() > membership.failure_timeout();
                    tracing::debug!(shard = %self.shard.name, peer = self.peer, error = %e, given_up, "replica call failed");
                    if given_up {
                        self.set_uncounted();
                        self.known = None;
                        self.clear_buffer();
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
    }

    fn set_uncounted(&self) {
        self.progress.send_if_modified(|p| {
            let changed = p.counted;
            p.counted = false;
            changed
        });
    }

    fn extend(&mut self, batch: &[WireEntry]) {
        for entry in batch {
            self.buffer_bytes += approximate_size(entry);
            self.buffer.push_back(entry.clone());
        }
        if self.buffer_bytes > MAX_BUFFER_BYTES {
            self.clear_buffer();
        }
    }

    fn clear_buffer(&mut self) {
        self.buffer.clear();
        self.buffer_bytes = 0;
    }

    fn pop_front(&mut self) -> Option<WireEntry> {
        let entry = self.buffer.pop_front()?;
        self.buffer_bytes = self.buffer_bytes.saturating_sub(approximate_size(&entry));
        Some(entry)
    }

    fn drain(&mut self) {
        while let Ok(batch) = self.rx.try_recv() {
            self.extend(&batch);
        }
    }

    async fn wait_for_more(&mut self) {
        if let Some(batch) = self.rx.recv().await {
            self.extend(&batch);
        }
    }

    fn request(&self, prev: Position, entries: Vec<WireEntry>) -> AppendRequest {
        AppendRequest {
            shard: self.shard.name.clone(),
            from: self.context.me,
            term: self.term,
            prev,
            entries,
            snapshot: None,
            in_sync: self.progress.borrow().counted,
        }
    }

    async fn next(&mut self) -> Result<Next, crate::error::QueueError> {
        if self.snapshot_needed {
            let (at, snapshot) = {
                let core = self.shard.lock();
                (core.last, core.queue.snapshot())
            };
            let mut request = self.request(at, Vec::new());
            request.snapshot = Some(snapshot);
            while self.buffer.front().is_some_and(|e| e.lsn <= at.lsn) {
                self.pop_front();
            }
            return Ok(Next::Send(request));
        }
        let Some(known) = self.known else {
            // Probe: does the replica hold our last entry?
            let last = self.shard.lock().last;
            return Ok(Next::Send(self.request(last, Vec::new())));
        };
        while self.buffer.front().is_some_and(|e| e.lsn <= known.lsn) {
            self.pop_front();
        }
        if self.announce {
            self.announce = false;
            return Ok(Next::Send(self.request(known, Vec::new())));
        }
        let owner_last = self.shard.lock().last;
        if known.lsn >= owner_last.lsn {
            return Ok(Next::Idle);
        }
        let entries = if self.buffer.front().map(|e| e.lsn) == Some(known.lsn + 1) {
            let mut bytes = 0;
            let mut out = Vec::new();
            while let Some(entry) = self.buffer.front() {
                if out.len() >= MAX_BATCH || (bytes >= MAX_BATCH_BYTES && !out.is_empty()) {
                    break;
                }
                bytes += approximate_size(entry);
                if let Some(entry) = self.pop_front() {
                    out.push(entry);
                }
            }
            out
        } else {
            let log = self.shard.log.clone();
            let from = known.lsn + 1;
            let read = tokio::task::spawn_blocking(move || log.read_from(from, MAX_BATCH_BYTES))
                .await
                .map_err(|e| crate::error::QueueError::Internal(e.to_string()))?
                .map_err(|e| crate::error::QueueError::Internal(e.to_string()))?;
            if read.first().map(|e| e.lsn) != Some(from) {
                if read.is_empty() {
                    return Ok(Next::Later);
                }
                // The entries we need were purged meanwhile.
                self.snapshot_needed = true;
                return Ok(Next::Later);
            }
            read.iter().map(to_wire).collect::<Result<Vec<_>, _>>()?
        };
        Ok(Next::Send(self.request(known, entries)))
    }
}

fn approximate_size(entry: &WireEntry) -> usize {
    match &entry.record {
        syncd_queue_core::Record::Enqueue { body } => body.len() + 32,
        _ => 64,
    }
}
