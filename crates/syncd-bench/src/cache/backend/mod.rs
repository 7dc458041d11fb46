//! The key-value services the cache workload drives, behind one trait.
//!
//! A [`CacheBackend`] knows a service (its endpoints) and opens one [`CacheSession`] per simulated client; a
//! session is one client (its own connection or connection pool), used by one task, one call at a time: a GET
//! returns the value or says it is absent, a SET returns once the service has acknowledged the write.

pub mod memcached;
pub mod redis;
pub mod syncd;

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a GET found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The value, served from the copy of the node that was asked, without asking another node (Syncd's
    /// `X-Cache: hit`).
    Local(Vec<u8>),
    /// The value, fetched from elsewhere: Syncd's `X-Cache: miss` (from the key's home or another peer), or any
    /// answer of a remote store (Redis, memcached: every GET is a network round trip to the one server).
    Remote(Vec<u8>),
    /// The key has no value (Syncd's 404 `not_found`, Redis's nil, memcached's bare `END`).
    Absent,
}

/// What the hit rate of a service counts, so that the tables can say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HitMeaning {
    /// GETs served from the asked node's own copy ([`Lookup::Local`]).
    Local,
    /// GETs that found the key at all ([`Lookup::Local`] or [`Lookup::Remote`]): for remote stores.
    Found,
}

/// Counters a cache keeps about itself (Syncd's `GET /v1/cache`), summed over its nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCounters {
    /// Lines the nodes may hold.
    #[serde(default)]
    pub capacity: u64,
    /// Lines they hold.
    #[serde(default)]
    pub entries: u64,
    /// GETs served from a node's own copy.
    #[serde(default)]
    pub hits: u64,
    /// GETs that asked another node.
    #[serde(default)]
    pub misses: u64,
    /// Lines dropped to stay within the capacity.
    #[serde(default)]
    pub evictions: u64,
    /// Invalidations sent to other nodes (writes that had to take copies away).
    #[serde(default)]
    pub invalidations_sent: u64,
    /// Invalidations received from other nodes.
    #[serde(default)]
    pub invalidations_received: u64,
}

impl ServerCounters {
    /// Adds `other`'s figures (another node's) to these.
    pub fn add(&mut self, other: &ServerCounters) {
        self.capacity += other.capacity;
        self.entries += other.entries;
        self.hits += other.hits;
        self.misses += other.misses;
        self.evictions += other.evictions;
        self.invalidations_sent += other.invalidations_sent;
        self.invalidations_received += other.invalidations_received;
    }

    /// What happened between `earlier` and `self`: counters as differences, capacity and entries as they are now.
    pub fn since(&self, earlier: &ServerCounters) -> ServerCounters {
        ServerCounters {
            capacity: self.capacity,
            entries: self.entries,
            hits: self.hits.saturating_sub(earlier.hits),
            misses: self.misses.saturating_sub(earlier.misses),
            evictions: self.evictions.saturating_sub(earlier.evictions),
            invalidations_sent: self
                .invalidations_sent
                .saturating_sub(earlier.invalidations_sent),
            invalidations_received: self
                .invalidations_received
                .saturating_sub(earlier.invalidations_received),
        }
    }
}

/// A key-value service under test.
pub trait CacheBackend: Send + Sync + 'static {
    /// One client of the service.
    type Session: CacheSession;

    /// A short name, e.g. `syncd`; `--label` replaces it in tables.
    fn label(&self) -> String;

    /// What this service's hit rate counts.
    fn hit_meaning(&self) -> HitMeaning;

    /// Waits until the service answers.
    fn wait_ready(&self, within: Duration) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Opens client number `client` (it talks to endpoint `client` mod n).
    fn connect(&self, client: usize) -> impl Future<Output = anyhow::Result<Self::Session>> + Send;

    /// The service's own counters, summed over its nodes, where it has any worth showing (`None` otherwise, or
    /// when they cannot be read).
    fn counters(&self) -> impl Future<Output = Option<ServerCounters>> + Send {
        async { None }
    }
}

/// One client of a key-value service.
pub trait CacheSession: Send + 'static {
    /// Reads `key`.
    fn get(&mut self, key: &str) -> impl Future<Output = anyhow::Result<Lookup>> + Send;

    /// Writes `value` under `key`; returns once the service has acknowledged it.
    fn set(&mut self, key: &str, value: &[u8]) -> impl Future<Output = anyhow::Result<()>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_and_subtract() {
        let node = ServerCounters {
            capacity: 10,
            entries: 4,
            hits: 100,
            misses: 7,
            evictions: 1,
            invalidations_sent: 3,
            invalidations_received: 2,
        };
        let mut sum = ServerCounters::default();
        sum.add(&node);
        sum.add(&node);
        assert_eq!(sum.capacity, 20);
        assert_eq!(sum.hits, 200);
        let delta = sum.since(&node);
        assert_eq!(delta.capacity, 20);
        assert_eq!(delta.entries, 8);
        assert_eq!(delta.hits, 100);
        assert_eq!(delta.invalidations_received, 2);
        assert_eq!(node.since(&sum).misses, 0);
    }
}
