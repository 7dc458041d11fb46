//! Leader loss: SIGKILL mid-traffic and SIGTERM hand-over lose no granted lock, and tokens keep growing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use syncd_client::syncd_api::locks::{LockMode, ReleaseRequest};

use super::harness::Cluster;
use super::locks_basic::acquire;

/// Grants `n` exclusive locks through every node; returns (name, owner, token).
async fn grant_many(cluster: &Cluster, prefix: &str, n: u64) -> Vec<(String, String, u64)> {
    let nodes = cluster.running();
    let mut out = Vec::new();
    for i in 0..n {
        let node = nodes[(i as usize) % nodes.len()];
        let (name, owner) = (format!("{prefix}-{i}"), format!("worker-{i}"));
        let got = acquire(&cluster.client(node), &name, &owner, LockMode::Exclusive, 0)
            .await
            .unwrap();
        out.push((name, owner, got.token));
    }
    out
}

async fn assert_still_held(cluster: &Cluster, via: u64, granted: &[(String, String, u64)]) {
    let c = cluster.client(via);
    for (name, owner, token) in granted {
        let info = c.lock(name).await.unwrap();
        assert_eq!(info.holders.len(), 1, "{name}: {info:?}");
        assert_eq!(&info.holders[0].owner, owner, "{name}");
        assert_eq!(info.holders[0].token, *token, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_mid_traffic_loses_no_granted_lock() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader().await;
    let granted = grant_many(&cluster, "job", 30).await;
    let max_token = Arc::new(AtomicU64::new(granted.iter().map(|g| g.2).max().unwrap()));

    // Traffic through a follower while the leader dies: acquire/release cycles; errors during the election are
    // expected (503), but every grant it sees must carry a fresh token.
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (c, stop, max_token) = (cluster.client(follower), stop.clone(), max_token.clone());
        tokio::spawn(async move {
            let mut grants = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(got) = acquire(&c, "busy", "traffic", LockMode::Exclusive, 0).await {
                    let previous = max_token.fetch_max(got.token, Ordering::SeqCst);
                    // Equal only when a release was lost in the failover and the re-acquire is idempotent.
                    assert!(got.token >= previous, "token went back");
                    grants += 1;
                    let release = ReleaseRequest {
                        owner: "traffic".into(),
                        token: Some(got.token),
                    };
                    let _ = c.release("busy", &release).await;
                }
            }
            grants
        })
    };

    let killed_at = Instant::now();
    cluster.kill(leader);
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    let first = acquire(
        &cluster.client(follower),
        "after",
        "someone",
        LockMode::Exclusive,
        0,
    )
    .await
    .unwrap();
    eprintln!(
        "failover: node {new_leader} granted a lock {:?} after node {leader} was killed",
        killed_at.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    let grants = traffic.await.unwrap();
    assert!(grants > 0, "the traffic generator never got a grant");
    // With the traffic stopped, the next grant must beat every token handed out before, across the failover.
    let fresh = acquire(
        &cluster.client(follower),
        "last",
        "someone",
        LockMode::Exclusive,
        0,
    )
    .await
    .unwrap();
    assert!(fresh.token > max_token.load(Ordering::SeqCst).max(first.token));

    assert_still_held(&cluster, follower, &granted).await;

    // The old leader comes back, catches up, and agrees.
    cluster.restart(leader);
    let target = cluster.applied(new_leader).await;
    cluster.applied_at_least(leader, target).await;
    assert_still_held(&cluster, leader, &granted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_leadership_over_and_exits_zero() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader().await;
    let granted = grant_many(&cluster, "kept", 5).await;
    assert!(
        cluster.terminate(leader),
        "the leader did not exit 0 on SIGTERM"
    );
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    assert_still_held(&cluster, new_leader, &granted).await;
    let fresh = acquire(
        &cluster.client(new_leader),
        "new",
        "n",
        LockMode::Exclusive,
        0,
    )
    .await
    .unwrap();
    assert!(fresh.token > granted.iter().map(|g| g.2).max().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prestop_hand_over_moves_leadership_and_keeps_serving() {
    let cluster = Cluster::start(3);
    let leader = cluster.leader().await;
    let granted = grant_many(&cluster, "kept", 3).await;
    let (status, body) = cluster
        .client(leader)
        .get_raw("/internal/locks/hand-over")
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["leader_elsewhere"], true);
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    // The old leader is a working follower: it still answers and forwards.
    assert_still_held(&cluster, leader, &granted).await;
    let fresh = acquire(
        &cluster.client(leader),
        "after",
        "n",
        LockMode::Exclusive,
        0,
    )
    .await
    .unwrap();
    assert!(fresh.token > granted.iter().map(|g| g.2).max().unwrap());
    // On a follower the hook is a no-op that reports the leader is elsewhere.
    let (_, body) = cluster
        .client(leader)
        .get_raw("/internal/locks/hand-over")
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["leader_elsewhere"], true);
}
