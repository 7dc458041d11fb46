//! The Syncd consistent-hash ring: which node owns a queue shard, and which nodes hold its replicas.
//!
//! Pure logic, no I/O. Each member is placed at `vnodes` points on a 64-bit ring; a key (a queue name) belongs to
//! the first point clockwise from its hash, and its replicas are the next distinct members clockwise. Hashes are
//! XXH3-64 (fixed seed 0) of fixed byte layouts, never `std`'s `DefaultHasher`, so every node and every version
//! places every key the same way.
//!
//! Guarantees (property-tested in `tests/properties.rs`):
//! - placement depends only on the member set and `vnodes`, not on the order members were added;
//! - with the default 256 virtual nodes, each of 3..=16 members owns between 0.6/N and 1.5/N of the keys;
//! - adding or removing one member moves only the keys whose owner set involves that member: about 1/N of them,
//!   and never a key from one unchanged member to another.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// A node id.
pub type NodeId = u64;

/// Virtual nodes per member unless configured otherwise.
pub const DEFAULT_VNODES: u32 = 256;

/// The ring at one membership epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    epoch: u64,
    vnodes: u32,
    members: BTreeSet<NodeId>,
    /// (point, member), sorted by point then member.
    #[serde(skip)]
    points: Vec<(u64, NodeId)>,
}

/// Hash of a key on the ring.
pub fn key_hash(key: &str) -> u64 {
    xxh3_64(key.as_bytes())
}

fn point(member: NodeId, replica: u32) -> u64 {
    let mut bytes = [0u8; 12];
    bytes[..8].copy_from_slice(&member.to_le_bytes());
    bytes[8..].copy_from_slice(&replica.to_le_bytes());
    xxh3_64(&bytes)
}

impl Ring {
    /// A ring of `members` with `vnodes` points each, at `epoch`.
    pub fn new(members: impl IntoIterator<Item = NodeId>, vnodes: u32, epoch: u64) -> Ring {
        let members: BTreeSet<NodeId> = members.into_iter().collect();
        let vnodes = vnodes.max(1);
        let mut points: Vec<(u64, NodeId)> = members
            .iter()
            .flat_map(|m| (0..vnodes).map(move |r| (point(*m, r), *m)))
            .collect();
        points.sort_unstable();
        Ring {
            epoch,
            vnodes,
            members,
            points,
        }
    }

    /// The next ring: `members` at `epoch + 1` with the same virtual node count.
    pub fn with_members(&self, members: impl IntoIterator<Item = NodeId>) -> Ring {
        Ring::new(members, self.vnodes, self.epoch + 1)
    }

    /// The membership epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Virtual nodes per member.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// The members.
    pub fn members(&self) -> &BTreeSet<NodeId> {
        &self.members
    }

    /// The owner of `key`, `None` on an empty ring.
    pub fn owner(&self, key: &str) -> Option<NodeId> {
        self.placement(key, 1).first().copied()
    }

    /// The owner of a key given as bytes (cache keys need not be UTF-8); the same as [`Ring::owner`] for the
    /// bytes of a string.
    pub fn owner_of_bytes(&self, key: &[u8]) -> Option<NodeId> {
        if self.points.is_empty() {
            return None;
        }
        let hash = xxh3_64(key);
        let start = self.points.partition_point(|(p, _)| *p < hash);
        Some(self.points[start % self.points.len()].1)
    }

    /// The owner of `key` followed by up to `copies - 1` distinct successors: where its `copies` copies live.
    pub fn placement(&self, key: &str, copies: usize) -> Vec<NodeId> {
        let want = copies.min(self.members.len());
        let mut out: Vec<NodeId> = Vec::with_capacity(want);
        if want == 0 {
            return out;
        }
        let start = self.points.partition_point(|(p, _)| *p < key_hash(key));
        for i in 0..self.points.len() {
            let (_, member) = self.points[(start + i) % self.points.len()];
            if !out.contains(&member) {
                out.push(member);
                if out.len() == want {
                    break;
                }
            }
        }
        out
    }

    /// Rebuilds the point index after deserialization (points are derived, not stored).
    pub fn rebuilt(self) -> Ring {
        Ring::new(self.members, self.vnodes, self.epoch)
    }
}

/// How one key's placement changes between two rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The key.
    pub key: String,
    /// Its copies before (owner first).
    pub from: Vec<NodeId>,
    /// Its copies after (owner first).
    pub to: Vec<NodeId>,
}

impl Move {
    /// Whether the owner changes (the shard must be handed over before the new owner serves it).
    pub fn owner_changes(&self) -> bool {
        self.from.first() != self.to.first()
    }
}

/// The keys whose placement (owner or replicas, `copies` in all) differs between `old` and `new`.
pub fn moves<'a>(
    old: &Ring,
    new: &Ring,
    keys: impl IntoIterator<Item = &'a str>,
    copies: usize,
) -> Vec<Move> {
    keys.into_iter()
        .filter_map(|key| {
            let from = old.placement(key, copies);
            let to = new.placement(key, copies);
            (from != to).then(|| Move {
                key: key.to_owned(),
                from,
                to,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_ring_places_nothing() {
        let ring = Ring::new([], DEFAULT_VNODES, 0);
        assert_eq!(ring.owner("q"), None);
        assert!(ring.placement("q", 2).is_empty());
    }

    #[test]
    fn byte_keys_place_like_string_keys() {
        let ring = Ring::new([1, 2, 3], DEFAULT_VNODES, 1);
        for key in ["a", "orders", "user:42", "ünïcode"] {
            assert_eq!(ring.owner_of_bytes(key.as_bytes()), ring.owner(key));
        }
        assert_eq!(Ring::new([], 8, 0).owner_of_bytes(b"x"), None);
    }

    #[test]
    fn placement_is_distinct_and_capped() {
        let ring = Ring::new([1, 2, 3], DEFAULT_VNODES, 1);
        let p = ring.placement("orders", 5);
        assert_eq!(p.len(), 3);
        let distinct: BTreeSet<_> = p.iter().collect();
        assert_eq!(distinct.len(), 3);
        assert_eq!(ring.owner("orders"), Some(p[0]));
    }

    #[test]
    fn hashes_are_stable_across_versions() {
        // XXH3-64 with seed 0 is a published function: these values must never change, or data moves on upgrade.
        assert_eq!(key_hash(""), 0x2D06_8005_38D3_94C2);
        assert_eq!(
            Ring::new([0, 1, 2], 16, 0).owner("orders"),
            Ring::new([2, 1, 0], 16, 0).owner("orders")
        );
    }

    #[test]
    fn serde_round_trip_rebuilds_points() {
        let ring = Ring::new([4, 5, 6], 32, 9);
        let json = serde_json::to_string(&ring).unwrap();
        let back: Ring = serde_json::from_str::<Ring>(&json).unwrap().rebuilt();
        assert_eq!(back, ring);
        assert_eq!(back.owner("k"), ring.owner("k"));
    }
}
