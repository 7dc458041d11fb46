//! Property tests of the ring: balance, minimal movement on membership changes, order independence.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use syncd_ring::{DEFAULT_VNODES, NodeId, Ring, moves};

const KEYS: usize = 20_000;

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("queue-{i}")).collect()
}

fn members(n: usize) -> impl Strategy<Value = BTreeSet<NodeId>> {
    proptest::collection::btree_set(0u64..10_000, n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_member_owns_a_fair_share(n in 3usize..=16, seed in any::<u64>()) {
        let members: Vec<NodeId> = (0..n as u64).map(|i| i.wrapping_mul(7919).wrapping_add(seed % 1000)).collect();
        let ring = Ring::new(members.clone(), DEFAULT_VNODES, 1);
        let mut owned: BTreeMap<NodeId, usize> = BTreeMap::new();
        for key in keys() {
            *owned.entry(ring.owner(&key).unwrap()).or_default() += 1;
        }
        let fair = KEYS as f64 / n as f64;
        for m in &members {
            let share = *owned.get(m).unwrap_or(&0) as f64;
            prop_assert!(share >= 0.6 * fair && share <= 1.5 * fair,
                "member {m} owns {share} keys, fair share {fair:.0} (n = {n})");
        }
    }

    #[test]
    fn adding_a_member_moves_only_keys_it_takes(members in (3usize..=16).prop_flat_map(members), added in 10_000u64..20_000, copies in 1usize..=2) {
        let old = Ring::new(members.clone(), DEFAULT_VNODES, 1);
        let new = old.with_members(members.iter().copied().chain([added]));
        let keys = keys();
        let moved = moves(&old, &new, keys.iter().map(String::as_str), copies);
        for m in &moved {
            // Every changed placement involves the new member; nothing moves between two unchanged members.
            prop_assert!(m.to.contains(&added), "{m:?}");
            let kept: Vec<_> = m.to.iter().filter(|n| **n != added).collect();
            prop_assert!(kept.iter().all(|n| m.from.contains(n)), "{m:?}");
        }
        let owners_moved = moved.iter().filter(|m| m.owner_changes()).count() as f64;
        let expected = KEYS as f64 / (members.len() + 1) as f64;
        prop_assert!(owners_moved <= 1.6 * expected, "{owners_moved} owners moved, about {expected:.0} expected");
    }

    #[test]
    fn removing_a_member_moves_only_its_keys(members in (4usize..=16).prop_flat_map(members), pick in any::<prop::sample::Index>(), copies in 1usize..=2) {
        let gone = *pick.get(&members.iter().copied().collect::<Vec<_>>());
        let old = Ring::new(members.clone(), DEFAULT_VNODES, 1);
        let new = old.with_members(members.iter().copied().filter(|m| *m != gone));
        let keys = keys();
        let moved = moves(&old, &new, keys.iter().map(String::as_str), copies);
        for m in &moved {
            prop_assert!(m.from.contains(&gone), "{m:?}");
            prop_assert!(m.from.iter().filter(|n| **n != gone).all(|n| m.to.contains(n)), "{m:?}");
        }
        let owners_moved = moved.iter().filter(|m| m.owner_changes()).count() as f64;
        let expected = KEYS as f64 / members.len() as f64;
        prop_assert!(owners_moved <= 1.6 * expected, "{owners_moved} owners moved, about {expected:.0} expected");
    }

    #[test]
    fn placement_does_not_depend_on_insertion_order(members in (1usize..=10).prop_flat_map(members), key in "[a-z0-9.-]{1,20}") {
        let forward = Ring::new(members.iter().copied(), 64, 0);
        let backward = Ring::new(members.iter().rev().copied(), 64, 0);
        prop_assert_eq!(forward.placement(&key, 3), backward.placement(&key, 3));
    }
}
