//! The leader's replication stream to one replica.
//!
//! New entries arrive from the write path in lsn order and are sent as they come (before the leader's own fsync
//! completes: the two run in parallel). When the replica is behind, diverged or was unreachable, the stream finds
//! the match point ([`crate::log_match`]), sends what is missing from the leader's log on disk (or a snapshot
//! when the leader already deleted those entries), and returns to live sending once it reaches the leader's tail.
//!
//! Each answer reports the replica's durable position to the leader engine ([`crate::leading::Leading`]), which
//! decides what is acknowledged and whether the replica is in sync; the stream itself decides nothing. A replica
//! that knows a newer epoch ends the leadership.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::addrs::AddressBook;
use crate::leading::Leading;
use crate::log_match::{match_point, term_at};
use crate::peers::{PeerClient, PeerError};
use crate::shard::{Shard, to_wire};
use crate::wire::{AppendRequest, AppendResponse, Position, WireEntry, paths};

/// How long one append call may take before it is tried again.
const APPEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Payload bytes kept in memory for a replica that is behind; beyond this they are read back from disk.
const MAX_BUFFER_BYTES: usize = 64 << 20;
/// Most entries per append call.
const MAX_BATCH: usize = 512;
/// About the most payload bytes per append call.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// What every stream of a node shares.
pub(crate) struct StreamContext {
    pub me: u64,
    pub peers: PeerClient,
    pub addrs: Arc<AddressBook>,
}

/// A running stream; dropping it stops the stream.
pub(crate) struct StreamHandle {
    tx: mpsc::UnboundedSender<Arc<Vec<WireEntry>>>,
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
}

/// Starts streaming `shard` to `peer` for `leading`.
pub(crate) fn spawn(
    shard: Arc<Shard>,
    context: Arc<StreamContext>,
    peer: u64,
    leading: Arc<Leading>,
) -> StreamHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(
        Stream {
            shard,
            context,
            peer,
            leading,
            rx,
            buffer: VecDeque::new(),
            buffer_bytes: 0,
            known: None,
            snapshot_needed: false,
        }
        .run(),
    );
    StreamHandle { tx, task }
}

struct Stream {
    shard: Arc<Shard>,
    context: Arc<StreamContext>,
    peer: u64,
    leading: Arc<Leading>,
    rx: mpsc::UnboundedReceiver<Arc<Vec<WireEntry>>>,
    buffer: VecDeque<WireEntry>,
    buffer_bytes: usize,
    /// The replica's last entry known to match ours.
    known: Option<Position>,
    snapshot_needed: bool,
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
        let mut backoff = Duration::from_millis(20);
        loop {
            if self.leading.is_deposed() {
                return;
            }
            self.drain();
            let next = match self.next().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(shard = %self.shard.name, peer = self.peer, error = %e, "replication stream stalled");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            let request = match next {
                Next::Send(request) => request,
                Next::Idle => {
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
            let Some(addr) = self.context.addrs.addr(self.peer) else {
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
                    backoff = Duration::from_millis(20);
                    self.snapshot_needed = false;
                    self.known = Some(last);
                    self.leading.peer_acked(self.peer, last.lsn);
                }
                Ok(AppendResponse::Mismatch { summary }) => {
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
                Ok(AppendResponse::Stale { epoch }) => {
                    tracing::info!(shard = %self.shard.name, peer = self.peer, epoch, "replica knows a newer epoch; stepping down");
                    self.leading.depose();
                    self.shard.step_down(&self.leading);
                    return;
                }
                Err(e) => {
                    // Slow or unreachable: try again (from a fresh probe). Whether writes go on without this
                    // replica is the leader engine's decision, committed by the control group.
                    tracing::debug!(shard = %self.shard.name, peer = self.peer, error = %e, "replica call failed");
                    self.known = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
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
            epoch: self.leading.epoch,
            prev,
            entries,
            snapshot: None,
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
        syncd_queue_core::Record::Enqueue { body, .. } => body.len() + 32,
        _ => 64,
    }
}
