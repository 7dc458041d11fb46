//! The home side of this node: the directory entries of the keys it homes, and the requesters waiting for them.
//!
//! Each entry is a [`HomeKey`] from the protocol core. This module only keeps them in a map, hands out reply
//! tags, turns [`Effect::Reply`] into an answer to the waiting requester and returns the probes for the service
//! to send. The map is an LRU bounded like the lines: past the bound, the least recently used entry that no
//! transaction uses and whose copies' leases all ran out is forgotten (with its value).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use lru::LruCache;
use syncd_cache_core::{
    Effect, Home, HomeKey, Incoming, NodeId, Probe, ProbeAnswer, ProbeKind, Reply, Request, Txn,
};
use tokio::sync::oneshot;

use crate::metrics::CacheMetrics;

/// A probe to send for `key`.
#[derive(Debug, Clone)]
pub struct ProbeJob {
    /// The key.
    pub key: Bytes,
    /// The holder.
    pub to: NodeId,
    /// The probe.
    pub probe: Probe,
    /// The holder's lease end, in milliseconds on [`Directory::now_ms`]'s clock.
    pub deadline: u64,
}

struct State {
    home: Home,
    entries: LruCache<Bytes, HomeKey<Bytes>>,
    waiters: HashMap<u64, oneshot::Sender<Reply<Bytes>>>,
    next_tag: u64,
}

/// The keys this node homes.
pub struct Directory {
    state: Mutex<State>,
    metrics: CacheMetrics,
    capacity: usize,
    started: Instant,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Directory {
    /// An empty directory.
    pub fn new(home: Home, capacity: usize, started: Instant, metrics: CacheMetrics) -> Directory {
        Directory {
            state: Mutex::new(State {
                home,
                entries: LruCache::unbounded(),
                waiters: HashMap::new(),
                next_tag: 0,
            }),
            metrics,
            capacity: capacity.max(1),
            started,
        }
    }

    /// Milliseconds since the directory started: the clock of leases and probe deadlines.
    pub fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_millis() as u64
    }

    /// Runs (or queues) a request; the receiver gets the reply. A dropped sender means the key left this home.
    pub fn submit(
        &self,
        key: &Bytes,
        from: NodeId,
        inc: u64,
        request: Request<Bytes>,
        now: Instant,
    ) -> (oneshot::Receiver<Reply<Bytes>>, Vec<ProbeJob>) {
        let now_ms = self.now_ms(now);
        let (tx, rx) = oneshot::channel();
        let mut guard = self.lock();
        let state = &mut *guard;
        state.next_tag += 1;
        let tag = state.next_tag;
        state.waiters.insert(tag, tx);
        let entry = state
            .entries
            .get_or_insert_mut(key.clone(), HomeKey::default);
        let lost = entry.lost();
        let effects = entry.submit(
            &mut state.home,
            now_ms,
            Incoming {
                from,
                inc,
                tag,
                request,
            },
        );
        let probes = self.apply(state, key, lost, effects);
        self.bound(state, now_ms);
        (rx, probes)
    }

    /// A holder answered a probe.
    pub fn on_answer(
        &self,
        key: &Bytes,
        from: NodeId,
        inc: u64,
        txn: Txn,
        answer: ProbeAnswer<Bytes>,
        now: Instant,
    ) -> Vec<ProbeJob> {
        let now_ms = self.now_ms(now);
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(entry) = state.entries.peek_mut(key) else {
            return Vec::new();
        };
        let lost = entry.lost();
        let effects = entry.on_answer(&mut state.home, now_ms, from, inc, txn, answer);
        self.apply(state, key, lost, effects)
    }

    /// A holder could not be reached before its lease ran out.
    pub fn on_unreachable(&self, key: &Bytes, from: NodeId, now: Instant) -> Vec<ProbeJob> {
        let now_ms = self.now_ms(now);
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(entry) = state.entries.peek_mut(key) else {
            return Vec::new();
        };
        let lost = entry.lost();
        let effects = entry.on_unreachable(&mut state.home, now_ms, from);
        self.apply(state, key, lost, effects)
    }

    /// Whether the running transaction of `key` still waits for `from` (a probe's sender stops retrying if not).
    pub fn waits_on(&self, key: &Bytes, from: NodeId) -> bool {
        self.lock()
            .entries
            .peek(key)
            .is_some_and(|e| e.waits_on(from))
    }

    /// Forgets every entry whose key this node no longer homes; their waiting requesters are refused.
    pub fn retain_homed(&self, homed: impl Fn(&[u8]) -> bool) -> usize {
        let mut guard = self.lock();
        let state = &mut *guard;
        let gone: Vec<Bytes> = state
            .entries
            .iter()
            .filter(|(k, _)| !homed(k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &gone {
            state.entries.pop(key);
        }
        // Waiters of forgotten entries can never be answered: drop their senders (the requester retries).
        if !gone.is_empty() {
            let live: std::collections::HashSet<u64> =
                state.entries.iter().flat_map(|(_, e)| e.tags()).collect();
            state.waiters.retain(|tag, _| live.contains(tag));
        }
        self.metrics
            .directory_entries
            .set(state.entries.len() as i64);
        gone.len()
    }

    /// Answers waiters, collects probes, counts losses, and forgets the entry if nothing is left in it.
    fn apply(
        &self,
        state: &mut State,
        key: &Bytes,
        lost_before: u64,
        effects: Vec<Effect<Bytes>>,
    ) -> Vec<ProbeJob> {
        let mut probes = Vec::new();
        for effect in effects {
            match effect {
                Effect::Reply { tag, reply, .. } => {
                    if let Some(waiter) = state.waiters.remove(&tag) {
                        // The requester may have given up; its line then ignores nothing it never sees.
                        let _ = waiter.send(reply);
                    }
                }
                Effect::Probe {
                    to,
                    probe,
                    deadline,
                } => {
                    match probe.kind {
                        ProbeKind::Invalidate => self.metrics.invalidations_sent.inc(),
                        ProbeKind::Downgrade => self.metrics.recalls_sent.inc(),
                    };
                    probes.push(ProbeJob {
                        key: key.clone(),
                        to,
                        probe,
                        deadline,
                    });
                }
            }
        }
        if let Some(entry) = state.entries.peek(key) {
            self.metrics
                .lost
                .inc_by(entry.lost().saturating_sub(lost_before));
            if entry.is_idle() && entry.value().is_none() {
                state.entries.pop(key);
            }
        }
        self.metrics
            .directory_entries
            .set(state.entries.len() as i64);
        probes
    }

    /// Forgets least recently used droppable entries while over capacity (and empty ones at once).
    fn bound(&self, state: &mut State, now_ms: u64) {
        const SCAN: usize = 32;
        while state.entries.len() > self.capacity {
            let victim = state
                .entries
                .iter()
                .rev()
                .take(SCAN)
                .find(|(_, e)| e.droppable(now_ms))
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            state.entries.pop(&victim);
            self.metrics.forgotten.inc();
        }
        self.metrics
            .directory_entries
            .set(state.entries.len() as i64);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
