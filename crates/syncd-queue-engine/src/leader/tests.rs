#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use super::*;

const T: Timing = Timing {
    lag_timeout_ms: 100,
    resend_ms: 50,
};

fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
    ids.iter().copied().collect()
}

fn control(leader: NodeId, replicas: &[NodeId], isr: &[NodeId], version: u64) -> ShardControl {
    ShardControl {
        placement: replicas.to_vec(),
        replicas: replicas.to_vec(),
        leader: Some(leader),
        epoch: 3,
        version,
        isr: set(isr),
    }
}

/// An epoch that starts at lsn 11 (10 entries from earlier epochs, all durable), at time 0.
fn start() -> Start {
    Start {
        epoch_start: 11,
        durable: 10,
        now_ms: 0,
    }
}

/// Leader 1 of replicas 1, 2, 3, all in sync, whose epoch starts at lsn 11 (10 entries from earlier epochs).
fn engine() -> LeaderEngine {
    let c = control(1, &[1, 2, 3], &[1, 2, 3], 5);
    LeaderEngine::new("q", 1, &c, &BTreeSet::new(), start(), T)
}

#[test]
fn a_write_is_acknowledged_once_every_in_sync_copy_has_it() {
    let mut e = engine();
    e.appended(11);
    assert_eq!(e.local_durable(11), None);
    assert_eq!(e.peer_acked(2, 11, 1), None);
    assert_eq!(e.peer_acked(3, 11, 1), Some(11));
    assert_eq!(e.high_watermark(), 11);
    e.appended(12);
    assert_eq!(e.peer_acked(2, 12, 2), None);
    assert_eq!(
        e.peer_acked(3, 12, 2),
        None,
        "not durable on the leader yet"
    );
    assert_eq!(e.local_durable(12), Some(12));
}

#[test]
fn a_lagging_replica_is_proposed_for_removal_and_waited_for_until_that_commits() {
    let mut e = engine();
    e.appended(11);
    e.local_durable(11);
    e.peer_acked(2, 11, 1);
    assert_eq!(e.tick(50), None, "not lagging long enough");
    let proposal = e.tick(200).expect("node 3 lags");
    assert_eq!(
        proposal,
        ControlCommand::ChangeIsr {
            shard: "q".into(),
            leader: 1,
            epoch: 3,
            version: 5,
            isr: set(&[1, 2]),
        }
    );
    // Until the removal is seen committed, the write still waits for node 3.
    assert_eq!(e.high_watermark(), 0);
    assert_eq!(e.ack_set(), set(&[1, 2, 3]));
    assert_eq!(e.tick(210), None, "one proposal at a time");
    assert!(e.tick(260).is_some(), "re-sent after resend_ms");
    let committed = control(1, &[1, 2, 3], &[1, 2], 6);
    assert_eq!(
        e.control_changed(&committed, &BTreeSet::new(), 270),
        ControlVerdict::Lead(Some(11))
    );
}

#[test]
fn a_replica_joins_once_it_holds_everything_acknowledged_and_is_waited_for_from_the_proposal() {
    let c = control(1, &[1, 2, 3], &[1, 2], 5);
    let mut e = LeaderEngine::new("q", 1, &c, &BTreeSet::new(), start(), T);
    e.appended(12);
    e.local_durable(12);
    assert_eq!(e.peer_acked(2, 12, 1), Some(12));
    // Node 3 has matched only the old epochs: not enough.
    e.peer_acked(3, 10, 1);
    assert_eq!(e.tick(2), None);
    e.peer_acked(3, 12, 3);
    let proposal = e.tick(4).expect("node 3 caught up");
    assert!(
        matches!(proposal, ControlCommand::ChangeIsr { ref isr, .. } if *isr == set(&[1, 2, 3]))
    );
    // From now on writes wait for node 3 too, before the addition commits.
    e.appended(13);
    e.local_durable(13);
    assert_eq!(e.peer_acked(2, 13, 5), None);
    assert_eq!(e.peer_acked(3, 13, 5), Some(13));
}

#[test]
fn a_fenced_replica_is_never_proposed_for_the_in_sync_set() {
    let c = control(1, &[1, 2], &[1], 5);
    let mut e = LeaderEngine::new("q", 1, &c, &set(&[2]), start(), T);
    e.appended(11);
    e.local_durable(11);
    e.peer_acked(2, 11, 1);
    assert_eq!(e.tick(2), None);
}

#[test]
fn a_superseded_proposal_leaves_the_acknowledgement_set() {
    let c = control(1, &[1, 2, 3], &[1, 2], 5);
    let mut e = LeaderEngine::new("q", 1, &c, &BTreeSet::new(), start(), T);
    e.appended(11);
    e.local_durable(11);
    e.peer_acked(2, 11, 1);
    e.peer_acked(3, 11, 1);
    assert!(e.tick(2).is_some());
    assert_eq!(e.ack_set(), set(&[1, 2, 3]));
    // The record moved on without the addition (say the controller fenced 3): the proposal can never apply.
    let moved = control(1, &[1, 2, 3], &[1, 2], 6);
    e.control_changed(&moved, &set(&[3]), 3);
    assert_eq!(e.ack_set(), set(&[1, 2]));
}

#[test]
fn an_unanswered_proposal_stays_in_the_acknowledgement_set() {
    let c = control(1, &[1, 2, 3], &[1, 2], 5);
    let mut e = LeaderEngine::new("q", 1, &c, &BTreeSet::new(), start(), T);
    e.appended(11);
    e.local_durable(11);
    e.peer_acked(2, 11, 1);
    e.peer_acked(3, 11, 1);
    assert!(e.tick(2).is_some());
    // A record of the same version (an older view arriving late) does not clear it.
    e.control_changed(&c, &BTreeSet::new(), 3);
    assert_eq!(e.ack_set(), set(&[1, 2, 3]));
}

#[test]
fn a_new_epoch_or_another_leader_means_stepping_down() {
    let mut e = engine();
    let mut newer = control(1, &[1, 2, 3], &[1, 2, 3], 6);
    newer.epoch = 4;
    assert_eq!(
        e.control_changed(&newer, &BTreeSet::new(), 1),
        ControlVerdict::StepDown
    );
    let mut e = engine();
    let other = control(2, &[1, 2, 3], &[2, 3], 6);
    assert_eq!(
        e.control_changed(&other, &BTreeSet::new(), 1),
        ControlVerdict::StepDown
    );
    // An older record is ignored.
    let mut e = engine();
    let older = control(2, &[1, 2, 3], &[2, 3], 4);
    assert_eq!(
        e.control_changed(&older, &BTreeSet::new(), 1),
        ControlVerdict::Lead(None)
    );
}

#[test]
fn a_replica_added_by_a_ring_change_is_streamed_to_but_not_waited_for_until_in_sync() {
    let mut e = engine();
    let mut moved = control(1, &[1, 2, 3, 4], &[1, 2, 3], 6);
    moved.placement = vec![1, 4];
    e.control_changed(&moved, &BTreeSet::new(), 1);
    assert_eq!(e.replicas().collect::<Vec<_>>(), vec![2, 3, 4]);
    e.appended(11);
    e.local_durable(11);
    e.peer_acked(2, 11, 2);
    assert_eq!(e.peer_acked(3, 11, 2), Some(11));
}

#[test]
fn a_replica_one_batch_behind_under_steady_load_is_not_lagging() {
    let mut e = engine();
    let mut lsn = 10;
    // Every answer covers what the leader had when the previous answer came, never the current log end.
    for round in 0..50u64 {
        let now = round * 100;
        let acked_up_to = lsn;
        lsn += 5;
        e.appended(lsn);
        e.local_durable(lsn);
        e.peer_acked(2, acked_up_to, now);
        e.peer_acked(3, acked_up_to, now);
        assert_eq!(
            e.tick(now),
            None,
            "round {round}: a healthy replica proposed for removal"
        );
    }
    // One that stops answering lags after the timeout.
    e.appended(lsn + 1);
    e.peer_acked(2, lsn, 5_000);
    let proposal = e
        .tick(4_900 + T.lag_timeout_ms + 1)
        .expect("node 3 stopped answering");
    assert!(matches!(proposal, ControlCommand::ChangeIsr { ref isr, .. } if *isr == set(&[1, 2])));
}
