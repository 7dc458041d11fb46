//! Membership changes as the operator makes them: add learners, promote them, remove members, through any node.

use std::collections::BTreeSet;

use syncd_client::syncd_api::locks::{LockMode, MembershipChange};

use super::harness::{Cluster, eventually};
use super::locks_basic::acquire;

async fn voters_and_learners(cluster: &Cluster, via: u64) -> (Vec<u64>, Vec<u64>) {
    let status = cluster.client(via).status().await.unwrap().locks.unwrap();
    (status.members, status.learners)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_to_five_and_shrinking_back_to_three_keeps_every_lock() {
    let mut cluster = Cluster::start(3);
    cluster.leader().await;
    let held = acquire(&cluster.client(0), "held", "o", LockMode::Exclusive, 0)
        .await
        .unwrap();

    // Grow: each new node starts, joins as a learner (the call returns once it caught up), then becomes a voter.
    for _ in 0..2 {
        let id = cluster.add_node();
        let via = cluster.client(1);
        via.change_lock_membership(&MembershipChange::AddLearner {
            id,
            addr: cluster.addr(id),
        })
        .await
        .unwrap();
        let (voters, learners) = voters_and_learners(&cluster, 1).await;
        assert!(learners.contains(&id), "{learners:?}");
        let mut want: BTreeSet<u64> = voters.into_iter().collect();
        want.insert(id);
        via.change_lock_membership(&MembershipChange::SetVoters { voters: want })
            .await
            .unwrap();
    }
    eventually("five voters seen by every node", || async {
        for id in cluster.running() {
            let (voters, _) = voters_and_learners(&cluster, id).await;
            if voters != vec![0, 1, 2, 3, 4] {
                return None;
            }
        }
        Some(())
    })
    .await;
    // The new members serve reads from their own state.
    let info = cluster.client(4).lock("held").await.unwrap();
    assert_eq!(info.holders[0].token, held.token);

    // Shrink: remove the two newest members from raft first, then stop them.
    cluster
        .client(3)
        .change_lock_membership(&MembershipChange::SetVoters {
            voters: [0, 1, 2].into(),
        })
        .await
        .unwrap();
    cluster.kill(3);
    cluster.kill(4);
    cluster.leader().await;
    let (voters, learners) = voters_and_learners(&cluster, 0).await;
    assert_eq!(voters, vec![0, 1, 2]);
    assert!(learners.is_empty());
    let fresh = acquire(&cluster.client(2), "after", "o", LockMode::Exclusive, 0)
        .await
        .unwrap();
    assert!(fresh.token > held.token);

    // A voter set naming a stranger is refused, not applied.
    let refused = cluster
        .client(0)
        .change_lock_membership(&MembershipChange::SetVoters {
            voters: [0, 1, 7].into(),
        })
        .await;
    assert!(refused.is_err());
    assert_eq!(voters_and_learners(&cluster, 0).await.0, vec![0, 1, 2]);
}
