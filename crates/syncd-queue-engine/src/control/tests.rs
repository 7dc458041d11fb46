#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use super::*;

fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
    ids.iter().copied().collect()
}

/// A state with a ring of `members` (rf 2) whose nodes all started session `100 + id`.
fn formed(members: &[NodeId]) -> ControlState {
    let mut state = ControlState::default();
    let ring = ControlCommand::SetRing {
        members: members.to_vec(),
        vnodes: 16,
        replication_factor: 2,
        addrs: BTreeMap::new(),
    };
    assert!(matches!(state.apply(1, &ring), ControlOutcome::Ring(_)));
    for id in members {
        state.apply(
            1,
            &ControlCommand::StartSession {
                node: *id,
                session: 100 + id,
            },
        );
    }
    state
}

fn create(state: &mut ControlState, shard: &str) -> ShardControl {
    match state.apply(
        2,
        &ControlCommand::CreateShard {
            shard: shard.into(),
        },
    ) {
        ControlOutcome::Shard(s) => s,
        other => panic!("{other:?}"),
    }
}

fn change_isr(state: &mut ControlState, shard: &str, isr: &[NodeId]) -> ControlOutcome {
    let s = state.shards[shard].clone();
    state.apply(
        3,
        &ControlCommand::ChangeIsr {
            shard: shard.into(),
            leader: s.leader.unwrap(),
            epoch: s.epoch,
            version: s.version,
            isr: set(isr),
        },
    )
}

#[test]
fn a_new_shard_is_led_by_the_first_of_its_placement_with_every_live_copy_in_sync() {
    let mut state = formed(&[1, 2, 3]);
    let shard = create(&mut state, "orders");
    assert_eq!(shard.placement.len(), 2);
    assert_eq!(shard.replicas, shard.placement);
    assert_eq!(shard.leader, Some(shard.placement[0]));
    assert_eq!(shard.isr, shard.placement.iter().copied().collect());
    assert_eq!(shard.epoch, 1);
    // Creating it again answers the same record.
    assert_eq!(create(&mut state, "orders"), shard);
}

#[test]
fn no_shard_without_a_ring_or_without_a_live_copy() {
    let mut state = ControlState::default();
    assert!(matches!(
        state.apply(1, &ControlCommand::CreateShard { shard: "q".into() }),
        ControlOutcome::Refused(_)
    ));
    let mut state = formed(&[1, 2]);
    for id in [1, 2] {
        state.apply(
            2,
            &ControlCommand::Fence {
                node: id,
                session: 100 + id,
            },
        );
    }
    assert!(matches!(
        state.apply(3, &ControlCommand::CreateShard { shard: "q".into() }),
        ControlOutcome::Refused(_)
    ));
}

#[test]
fn an_isr_change_applies_only_for_the_current_leader_epoch_and_version() {
    let mut state = formed(&[1, 2, 3]);
    let shard = create(&mut state, "q");
    let leader = shard.leader.unwrap();
    let stale = ControlCommand::ChangeIsr {
        shard: "q".into(),
        leader,
        epoch: shard.epoch,
        version: shard.version + 7,
        isr: set(&[leader]),
    };
    assert!(matches!(
        state.apply(3, &stale),
        ControlOutcome::Stale(Some(_))
    ));
    let other = shard.placement[1];
    let not_leader = ControlCommand::ChangeIsr {
        shard: "q".into(),
        leader: other,
        epoch: shard.epoch,
        version: shard.version,
        isr: set(&[other]),
    };
    assert!(matches!(
        state.apply(3, &not_leader),
        ControlOutcome::Stale(Some(_))
    ));
    // Without the leader, or with a non-replica: refused.
    assert!(matches!(
        change_isr(&mut state, "q", &[other]),
        ControlOutcome::Refused(_)
    ));
    let outsider = [1, 2, 3]
        .into_iter()
        .find(|n| !shard.placement.contains(n))
        .unwrap();
    assert!(matches!(
        change_isr(&mut state, "q", &[leader, outsider]),
        ControlOutcome::Refused(_)
    ));
    let ControlOutcome::Shard(after) = change_isr(&mut state, "q", &[leader]) else {
        panic!()
    };
    assert_eq!(after.isr, set(&[leader]));
    assert_eq!(after.version, shard.version + 1);
    assert_eq!(after.epoch, shard.epoch);
    // The same proposal again is stale: a compare-and-set applies once.
    let replay = ControlCommand::ChangeIsr {
        shard: "q".into(),
        leader,
        epoch: shard.epoch,
        version: shard.version,
        isr: set(&[leader]),
    };
    assert!(matches!(state.apply(4, &replay), ControlOutcome::Stale(_)));
}

#[test]
fn fencing_the_leader_elects_an_in_sync_replica_in_a_new_epoch() {
    let mut state = formed(&[1, 2, 3]);
    let shard = create(&mut state, "q");
    let (leader, follower) = (shard.placement[0], shard.placement[1]);
    state.apply(
        5,
        &ControlCommand::Fence {
            node: leader,
            session: 100 + leader,
        },
    );
    let now = &state.shards["q"];
    assert_eq!(now.leader, Some(follower));
    assert_eq!(now.epoch, shard.epoch + 1);
    assert_eq!(now.isr, set(&[follower]));
}

#[test]
fn fencing_the_only_in_sync_copy_leaves_the_shard_waiting_for_it() {
    let mut state = formed(&[1, 2, 3]);
    let shard = create(&mut state, "q");
    let leader = shard.leader.unwrap();
    change_isr(&mut state, "q", &[leader]);
    state.apply(
        5,
        &ControlCommand::Fence {
            node: leader,
            session: 100 + leader,
        },
    );
    let waiting = state.shards["q"].clone();
    assert_eq!(waiting.leader, None, "no unclean election");
    assert_eq!(waiting.isr, set(&[leader]));
    // The replica coming and going changes nothing; the in-sync copy returning leads in a new epoch.
    let other = shard.placement[1];
    state.apply(
        6,
        &ControlCommand::StartSession {
            node: other,
            session: 900,
        },
    );
    assert_eq!(state.shards["q"].leader, None);
    state.apply(
        7,
        &ControlCommand::Unfence {
            node: leader,
            session: 100 + leader,
        },
    );
    let back = &state.shards["q"];
    assert_eq!(back.leader, Some(leader));
    assert!(back.epoch > waiting.epoch);
}

#[test]
fn a_fence_of_an_old_session_does_nothing() {
    let mut state = formed(&[1, 2, 3]);
    let shard = create(&mut state, "q");
    let leader = shard.leader.unwrap();
    state.apply(
        5,
        &ControlCommand::StartSession {
            node: leader,
            session: 555,
        },
    );
    let before = state.clone();
    state.apply(
        6,
        &ControlCommand::Fence {
            node: leader,
            session: 100 + leader,
        },
    );
    assert_eq!(state.shards, before.shards);
}

#[test]
fn a_restarted_leader_leads_on_in_a_new_epoch() {
    let mut state = formed(&[1, 2, 3]);
    let shard = create(&mut state, "q");
    let leader = shard.leader.unwrap();
    let previous = state.apply(
        5,
        &ControlCommand::StartSession {
            node: leader,
            session: 777,
        },
    );
    assert_eq!(
        previous,
        ControlOutcome::Session {
            previous: Some(100 + leader)
        }
    );
    let now = &state.shards["q"];
    assert_eq!(now.leader, Some(leader));
    assert_eq!(now.epoch, shard.epoch + 1);
    // The same session again (a repeated registration) changes nothing.
    let again = state.clone();
    state.apply(
        6,
        &ControlCommand::StartSession {
            node: leader,
            session: 777,
        },
    );
    assert_eq!(state.shards, again.shards);
}

#[test]
fn a_fenced_node_cannot_be_added_to_the_in_sync_set() {
    let mut state = formed(&[1, 2, 3]);
    let shard = create(&mut state, "q");
    let (leader, follower) = (shard.placement[0], shard.placement[1]);
    state.apply(
        5,
        &ControlCommand::Fence {
            node: follower,
            session: 100 + follower,
        },
    );
    assert_eq!(state.shards["q"].isr, set(&[leader]));
    assert!(matches!(
        change_isr(&mut state, "q", &[leader, follower]),
        ControlOutcome::Refused(_)
    ));
}

#[test]
fn the_preferred_leader_takes_its_shard_back_once_in_sync() {
    let mut state = formed(&[1, 2, 3]);
    let shard = create(&mut state, "q");
    let (preferred, other) = (shard.placement[0], shard.placement[1]);
    state.apply(
        5,
        &ControlCommand::Fence {
            node: preferred,
            session: 100 + preferred,
        },
    );
    assert_eq!(state.shards["q"].leader, Some(other));
    state.apply(
        6,
        &ControlCommand::StartSession {
            node: preferred,
            session: 999,
        },
    );
    let epoch = state.shards["q"].epoch;
    let ControlOutcome::Shard(back) = change_isr(&mut state, "q", &[preferred, other]) else {
        panic!()
    };
    assert_eq!(back.leader, Some(preferred));
    assert_eq!(back.epoch, epoch + 1);
}

#[test]
fn draining_hands_shards_to_in_sync_replicas_and_counts_the_orphans() {
    let mut state = formed(&[1, 2, 3]);
    let a = create(&mut state, "a");
    let leader = a.leader.unwrap();
    // Every shard led by `leader` with a live in-sync replica moves; make one whose only copy in sync is it.
    let names: Vec<String> = (0..40).map(|i| format!("q{i}")).collect();
    for name in &names {
        create(&mut state, name);
    }
    let lonely = names
        .iter()
        .find(|n| state.shards[*n].leader == Some(leader))
        .unwrap()
        .clone();
    change_isr(&mut state, &lonely, &[leader]);
    let outcome = state.apply(9, &ControlCommand::Drain { node: leader });
    assert_eq!(outcome, ControlOutcome::Orphaned(1));
    for (name, shard) in &state.shards {
        if *name == lonely {
            assert_eq!(shard.leader, None);
        } else {
            assert_ne!(shard.leader, Some(leader), "{name}");
            assert!(
                !shard.isr.contains(&leader) || shard.leader.is_none(),
                "{name}"
            );
        }
    }
    assert!(!state.live(leader));
}

#[test]
fn a_ring_change_adds_new_replicas_first_and_drops_old_ones_once_the_new_are_in_sync() {
    let mut state = formed(&[1, 2]);
    let names: Vec<String> = (0..30).map(|i| format!("q{i}")).collect();
    for name in &names {
        create(&mut state, name);
    }
    state.apply(
        3,
        &ControlCommand::StartSession {
            node: 3,
            session: 103,
        },
    );
    let ControlOutcome::Ring(ring) = state.apply(
        4,
        &ControlCommand::SetRing {
            members: vec![1, 2, 3],
            vnodes: 16,
            replication_factor: 2,
            addrs: BTreeMap::new(),
        },
    ) else {
        panic!()
    };
    assert_eq!(ring.epoch, 2);
    let moving: Vec<String> = names
        .iter()
        .filter(|n| state.shards[*n].moving())
        .cloned()
        .collect();
    assert!(!moving.is_empty(), "some shard moves to node 3");
    assert_eq!(state.pending_moves(), moving.len());
    for name in &moving {
        let shard = state.shards[name].clone();
        assert!(shard.placement.contains(&3));
        assert_eq!(shard.replicas.len(), 3, "old and new holders together");
        assert!(!shard.isr.contains(&3), "the new copy is not in sync yet");
        // The leader catches node 3 up and adds it: the move finishes.
        let mut isr = shard.isr.clone();
        isr.insert(3);
        let isr: Vec<NodeId> = isr.into_iter().collect();
        let ControlOutcome::Shard(done) = change_isr(&mut state, name, &isr) else {
            panic!()
        };
        assert!(!done.moving());
        assert_eq!(done.replicas, done.placement);
        assert!(done.isr.iter().all(|n| done.placement.contains(n)));
        let leader = done.leader.unwrap();
        assert!(done.placement.contains(&leader));
        if !shard.placement.contains(&shard.leader.unwrap()) || shard.leader != done.leader {
            assert!(done.epoch > shard.epoch, "a new leader is a new epoch");
        }
    }
    assert_eq!(state.pending_moves(), 0);
}

#[test]
fn the_same_ring_again_changes_nothing() {
    let mut state = formed(&[1, 2, 3]);
    create(&mut state, "q");
    let before = state.clone();
    state.apply(
        5,
        &ControlCommand::SetRing {
            members: vec![3, 2, 1],
            vnodes: 16,
            replication_factor: 2,
            addrs: BTreeMap::new(),
        },
    );
    assert_eq!(state.ring, before.ring);
    assert_eq!(state.shards, before.shards);
}
