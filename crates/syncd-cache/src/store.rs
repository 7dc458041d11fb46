//! This peer's lines: a bounded LRU of [`NodeKey`]s with their leases, and the hit/miss/eviction counters.
//!
//! The LRU is the `lru` crate's, created unbounded: the bound is enforced here because only lines holding a copy
//! count (a key whose request or write-back is in flight must stay until it finishes), and because the bound is in
//! lines and, optionally, in bytes. Eviction takes the least recently used line that holds a copy; a Modified line
//! becomes a write-back the caller must send.
//!
//! Leases: a copy is served only until `sent_at + lease`, where `sent_at` is when the request that brought it
//! left; the home counts the lease from when it granted, later, so the home never gives up on a holder that could
//! still serve. A copy whose lease ran out is evicted on its next use (written back if Modified).

use std::time::{Duration, Instant};

use bytes::Bytes;
use lru::LruCache;

use crate::metrics::CacheMetrics;
use syncd_cache_core::{
    LineState, NodeKey, Outcome, Policy, Probe, ProbeAnswer, ProbeKind, ReadStep, Reply, Request,
    WriteStep,
};

/// A home as a line remembers it: the node and the incarnation its request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HomeRef {
    /// Node id.
    pub id: u64,
    /// Its incarnation.
    pub inc: u64,
}

/// A write-back to send: the evicted Modified value, to the home that granted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBack {
    /// The key.
    pub key: Bytes,
    /// The home that granted the line.
    pub home: HomeRef,
    /// The `WriteBack` request.
    pub request: Request<Bytes>,
}

/// Limits and settings of the store.
#[derive(Debug, Clone, Copy)]
pub struct StoreConfig {
    /// Lines holding a copy, at most.
    pub capacity: usize,
    /// Bytes of keys and values held, at most (0: no byte limit).
    pub max_bytes: u64,
    /// How long a copy may be served after its request left.
    pub lease: Duration,
    /// The cluster's write policy.
    pub policy: Policy,
}

#[derive(Debug)]
struct Line {
    key: NodeKey<Bytes>,
    home: HomeRef,
    sent_at: Instant,
    lease_until: Option<Instant>,
    /// What this line counts for in `copies` and `bytes`.
    charged: (bool, u64),
}

/// This peer's lines.
#[derive(Debug)]
pub struct LineStore {
    lines: LruCache<Bytes, Line>,
    config: StoreConfig,
    copies: usize,
    bytes: u64,
    metrics: CacheMetrics,
}

/// A step of a local operation plus the write-backs its evictions need.
pub type WithWriteBacks<T> = (T, Vec<WriteBack>);

impl LineStore {
    /// An empty store.
    pub fn new(config: StoreConfig, metrics: CacheMetrics) -> LineStore {
        LineStore {
            lines: LruCache::unbounded(),
            config: StoreConfig {
                capacity: config.capacity.max(1),
                ..config
            },
            copies: 0,
            bytes: 0,
            metrics,
        }
    }

    /// The settings.
    pub fn config(&self) -> StoreConfig {
        self.config
    }

    /// Lines holding a copy.
    pub fn entries(&self) -> usize {
        self.copies
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// A local read. `home` is where a miss will be sent.
    pub fn read(
        &mut self,
        key: &Bytes,
        now: Instant,
        home: HomeRef,
    ) -> WithWriteBacks<ReadStep<Bytes>> {
        let mut writebacks = self.expire(key, now);
        let line = self.line(key, now, home);
        let step = line.key.read();
        match &step {
            ReadStep::Hit(..) => {
                self.metrics.hits.inc();
            }
            ReadStep::Miss(_) => {
                line.home = home;
                line.sent_at = now;
                self.metrics.misses.inc();
            }
            ReadStep::Busy => {}
        }
        writebacks.extend(self.settle(key));
        (step, writebacks)
    }

    /// A local write (`Some`) or delete (`None`).
    pub fn write(
        &mut self,
        key: &Bytes,
        value: Option<Bytes>,
        now: Instant,
        home: HomeRef,
    ) -> WithWriteBacks<WriteStep<Bytes>> {
        let mut writebacks = self.expire(key, now);
        let policy = self.config.policy;
        let line = self.line(key, now, home);
        let step = line.key.write(value, policy);
        if let WriteStep::Send(_) = &step {
            line.home = home;
            line.sent_at = now;
        }
        writebacks.extend(self.settle(key));
        (step, writebacks)
    }

    /// The home's reply to this peer's request for `key`.
    pub fn on_reply(&mut self, key: &Bytes, reply: Reply<Bytes>) -> WithWriteBacks<Outcome<Bytes>> {
        let lease = self.config.lease;
        let Some(line) = self.lines.get_mut(key) else {
            return (Outcome::Unexpected, Vec::new());
        };
        let outcome = line.key.on_reply(reply);
        if line.key.copy().is_some() {
            line.lease_until = Some(line.sent_at + lease);
        }
        if matches!(outcome, Outcome::WrittenBack) {
            self.metrics.writebacks.inc();
        }
        let writebacks = self.settle(key);
        (outcome, writebacks)
    }

    /// A home's probe about this peer's copy of `key`.
    pub fn on_probe(&mut self, key: &Bytes, probe: Probe) -> ProbeAnswer<Bytes> {
        match probe.kind {
            ProbeKind::Invalidate => self.metrics.invalidations_received.inc(),
            ProbeKind::Downgrade => self.metrics.recalls_received.inc(),
        };
        let Some(line) = self.lines.peek_mut(key) else {
            return ProbeAnswer::NotHeld;
        };
        let answer = line.key.on_probe(probe);
        let _ = self.settle(key);
        answer
    }

    /// The request in flight for `key` failed for good; a dirty value it kept must be written back.
    pub fn abandon(&mut self, key: &Bytes) -> Option<WriteBack> {
        let line = self.lines.peek_mut(key)?;
        let home = line.home;
        let request = line.key.abandon();
        let _ = self.settle(key);
        request.map(|request| WriteBack {
            key: key.clone(),
            home,
            request,
        })
    }

    /// The write-back of `key` cannot be delivered (its home is gone): the dirty value is lost.
    pub fn writeback_failed(&mut self, key: &Bytes) {
        if let Some(line) = self.lines.peek_mut(key) {
            line.key.abandon_writeback();
        }
        let _ = self.settle(key);
    }

    /// This peer's view of `key`: its copy's state, `I` when it has none or its lease ran out.
    pub fn state(&self, key: &Bytes, now: Instant) -> LineState {
        match self.lines.peek(key) {
            Some(line) if line.lease_until.is_some_and(|t| t > now) => line.key.state(),
            _ => LineState::I,
        }
    }

    /// Drops every copy whose home is no longer `home_of(key)` (membership changed). A Modified one is lost: its
    /// home no longer answers for the key. Returns how many copies went.
    pub fn drop_moved(&mut self, home_of: impl Fn(&[u8]) -> Option<HomeRef>) -> usize {
        let moved: Vec<Bytes> = self
            .lines
            .iter()
            .filter(|(key, line)| line.key.copy().is_some() && home_of(key) != Some(line.home))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &moved {
            if let Some(line) = self.lines.peek_mut(key) {
                let _ = line.key.evict();
                line.key.abandon_writeback();
            }
            let _ = self.settle(key);
        }
        moved.len()
    }

    /// Evicts every Modified line (the node is stopping) and returns their write-backs.
    pub fn evict_dirty(&mut self) -> Vec<WriteBack> {
        let dirty: Vec<Bytes> = self
            .lines
            .iter()
            .filter(|(_, line)| line.key.state() == LineState::M)
            .map(|(key, _)| key.clone())
            .collect();
        let mut writebacks = Vec::new();
        for key in &dirty {
            self.evict(key, &mut writebacks);
        }
        writebacks
    }

    /// The line of `key`, created empty if needed, marked most recently used.
    fn line(&mut self, key: &Bytes, now: Instant, home: HomeRef) -> &mut Line {
        self.lines.get_or_insert_mut(key.clone(), || Line {
            key: NodeKey::default(),
            home,
            sent_at: now,
            lease_until: None,
            charged: (false, 0),
        })
    }

    /// Evicts `key`'s copy if its lease ran out.
    fn expire(&mut self, key: &Bytes, now: Instant) -> Vec<WriteBack> {
        let Some(line) = self.lines.peek_mut(key) else {
            return Vec::new();
        };
        if line.key.copy().is_none() || line.lease_until.is_some_and(|t| t > now) {
            return Vec::new();
        }
        self.metrics.expirations.inc();
        let mut writebacks = Vec::new();
        self.evict(key, &mut writebacks);
        writebacks
    }

    fn evict(&mut self, key: &Bytes, writebacks: &mut Vec<WriteBack>) {
        if let Some(line) = self.lines.peek_mut(key) {
            line.lease_until = None;
            if let Some(request) = line.key.evict() {
                writebacks.push(WriteBack {
                    key: key.clone(),
                    home: line.home,
                    request,
                });
            }
        }
        self.recharge(key);
    }

    /// Re-counts `key`, forgets it when empty, and evicts least recently used lines while over the limits.
    fn settle(&mut self, key: &Bytes) -> Vec<WriteBack> {
        self.recharge(key);
        let mut writebacks = Vec::new();
        while self.copies > self.config.capacity
            || (self.config.max_bytes > 0 && self.bytes > self.config.max_bytes)
        {
            let victim = self
                .lines
                .iter()
                .rev()
                .find(|(_, line)| line.key.copy().is_some())
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            self.metrics.evictions.inc();
            self.evict(&victim, &mut writebacks);
        }
        writebacks
    }

    fn recharge(&mut self, key: &Bytes) {
        let Some(line) = self.lines.peek_mut(key) else {
            return;
        };
        let value_bytes =
            |c: Option<&syncd_cache_core::Copy<Bytes>>| c.map_or(0, |c| c.value.len());
        let held = line.key.copy().is_some();
        let bytes = if held || line.key.writeback().is_some() {
            (key.len() + value_bytes(line.key.copy()) + value_bytes(line.key.writeback())) as u64
        } else {
            0
        };
        let (was_held, was_bytes) = line.charged;
        line.charged = (held, bytes);
        let empty = line.key.is_empty();
        self.copies = self.copies - usize::from(was_held) + usize::from(held);
        self.bytes = self.bytes - was_bytes + bytes;
        self.metrics.entries.set(self.copies as i64);
        self.metrics.bytes.set(self.bytes as i64);
        if empty {
            self.lines.pop(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(capacity: usize, max_bytes: u64) -> LineStore {
        LineStore::new(
            StoreConfig {
                capacity,
                max_bytes,
                lease: Duration::from_secs(10),
                policy: Policy {
                    write_through: false,
                },
            },
            CacheMetrics::default(),
        )
    }

    const HOME: HomeRef = HomeRef { id: 1, inc: 1 };

    fn key(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// Reads `k` through a miss answered with an `E` fill of `v`.
    fn fill(s: &mut LineStore, k: &str, v: &str, grant: u64, now: Instant) -> Vec<WriteBack> {
        let (step, _) = s.read(&key(k), now, HOME);
        assert!(matches!(step, ReadStep::Miss(_)));
        let (_, wbs) = s.on_reply(
            &key(k),
            Reply::Fill {
                grant,
                state: LineState::E,
                value: Some(key(v)),
            },
        );
        wbs
    }

    #[test]
    fn the_least_recently_used_line_goes_and_a_dirty_one_is_written_back() {
        let now = Instant::now();
        let mut s = store(2, 0);
        fill(&mut s, "a", "1", 1, now);
        fill(&mut s, "b", "2", 2, now);
        // Make "a" dirty and most recently used; "b" is then the LRU line.
        let (step, _) = s.write(&key("a"), Some(key("9")), now, HOME);
        assert_eq!(step, WriteStep::Done);
        let wbs = fill(&mut s, "c", "3", 3, now);
        assert!(wbs.is_empty(), "clean b goes silently");
        assert_eq!(s.state(&key("b"), now), LineState::I);
        assert_eq!(s.entries(), 2);
        // Now "a" (M) is the least recently used.
        let wbs = fill(&mut s, "d", "4", 4, now);
        assert_eq!(
            wbs,
            vec![WriteBack {
                key: key("a"),
                home: HOME,
                request: Request::WriteBack {
                    grant: 1,
                    value: Some(key("9"))
                }
            }]
        );
        assert_eq!(s.metrics.evictions.get(), 2);
        // The write-back is in flight: reads of "a" wait for it.
        assert!(matches!(s.read(&key("a"), now, HOME).0, ReadStep::Busy));
        let (outcome, _) = s.on_reply(&key("a"), Reply::WrittenBack);
        assert_eq!(outcome, Outcome::WrittenBack);
        assert_eq!(s.metrics.writebacks.get(), 1);
    }

    #[test]
    fn the_byte_limit_evicts_too() {
        let now = Instant::now();
        let mut s = store(100, 10);
        fill(&mut s, "a", "12345", 1, now);
        fill(&mut s, "b", "12345", 2, now);
        assert_eq!(s.entries(), 1);
        assert!(s.bytes() <= 10);
    }

    #[test]
    fn an_expired_lease_is_a_miss() {
        let now = Instant::now();
        let mut s = store(10, 0);
        fill(&mut s, "a", "1", 1, now);
        assert!(matches!(s.read(&key("a"), now, HOME).0, ReadStep::Hit(..)));
        let later = now + Duration::from_secs(11);
        assert_eq!(s.state(&key("a"), later), LineState::I);
        assert!(matches!(
            s.read(&key("a"), later, HOME).0,
            ReadStep::Miss(_)
        ));
        assert_eq!(s.metrics.expirations.get(), 1);
        assert_eq!(s.metrics.hits.get(), 1);
        assert_eq!(s.metrics.misses.get(), 2);
    }

    #[test]
    fn accounting_returns_to_zero() {
        let now = Instant::now();
        let mut s = store(10, 0);
        fill(&mut s, "a", "1", 1, now);
        let answer = s.on_probe(
            &key("a"),
            Probe {
                txn: 2,
                target: 1,
                kind: ProbeKind::Invalidate,
            },
        );
        assert_eq!(answer, ProbeAnswer::Dropped);
        assert_eq!((s.entries(), s.bytes()), (0, 0));
        assert_eq!(s.metrics.invalidations_received.get(), 1);
    }
}
