//! Restarts from disk: a SIGKILLed node catches up, a whole cluster restarts with every lock, and a node that
//! missed a purged stretch of log is brought back by a snapshot.

use syncd_client::syncd_api::locks::LockMode;

use super::harness::Cluster;
use super::locks_basic::acquire;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_follower_restarts_from_disk_and_catches_up() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    for i in 0..10 {
        acquire(
            &cluster.client(leader),
            &format!("before-{i}"),
            "o",
            LockMode::Shared,
            0,
        )
        .await
        .unwrap();
    }
    let before = cluster.applied(leader).await;
    cluster.applied_at_least(follower, before).await;
    cluster.kill(follower);
    for i in 0..10 {
        acquire(
            &cluster.client(leader),
            &format!("during-{i}"),
            "o",
            LockMode::Shared,
            0,
        )
        .await
        .unwrap();
    }
    let target = cluster.applied(leader).await;
    cluster.restart(follower);
    cluster.applied_at_least(follower, target).await;
    let names = cluster.client(follower).locks().await.unwrap().locks.len();
    assert_eq!(names, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cluster_restart_keeps_every_lock_and_token() {
    let mut cluster = Cluster::start(3);
    cluster.leader().await;
    let mut held = Vec::new();
    for i in 0..12u64 {
        let mode = if i % 2 == 0 {
            LockMode::Exclusive
        } else {
            LockMode::Shared
        };
        let node = i % 3;
        let got = acquire(
            &cluster.client(node),
            &format!("lock-{i}"),
            &format!("o-{i}"),
            mode,
            0,
        )
        .await
        .unwrap();
        held.push(got);
    }
    let before = cluster.client(0).locks().await.unwrap();
    for id in cluster.ids() {
        cluster.kill(id);
    }
    for id in cluster.ids() {
        cluster.restart(id);
    }
    cluster.leader().await;
    let after = cluster.client(1).locks().await.unwrap();
    assert_eq!(after, before);
    let fresh = acquire(&cluster.client(2), "new", "n", LockMode::Exclusive, 0)
        .await
        .unwrap();
    assert!(fresh.token > held.iter().map(|h| h.token).max().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_purged_log_is_restored_by_snapshot() {
    // Snapshot every 20 entries so the log behind them is purged quickly.
    let mut cluster = Cluster::start_with(3, &["--snapshot-after-entries", "20"]);
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.kill(follower);
    // 40 entries: two snapshots, and the log before the first one is purged (a node keeps one snapshot
    // interval of log behind its snapshot), so the follower cannot catch up from the log alone.
    let c = cluster.client(leader);
    for i in 0..40 {
        acquire(&c, &format!("keep-{i}"), "k", LockMode::Exclusive, 0)
            .await
            .unwrap();
    }
    let target = cluster.applied(leader).await;
    cluster.restart(follower);
    cluster.applied_at_least(follower, target).await;
    assert_eq!(
        cluster.client(follower).locks().await.unwrap().locks.len(),
        40
    );
    // And the follower's own restart works from its snapshot file.
    cluster.kill(follower);
    cluster.restart(follower);
    cluster.applied_at_least(follower, target).await;
    assert_eq!(
        cluster.client(follower).locks().await.unwrap().locks.len(),
        40
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_disk_rejoins_as_a_new_member() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let mut held = Vec::new();
    for i in 0..5 {
        let got = acquire(
            &cluster.client(leader),
            &format!("kept-{i}"),
            "o",
            LockMode::Exclusive,
            0,
        )
        .await
        .unwrap();
        held.push(got);
    }
    cluster
        .applied_at_least(follower, cluster.applied(leader).await)
        .await;
    cluster.kill(follower);
    cluster.wipe(follower);
    cluster.restart(follower);

    // It left the voters, came back as a learner, caught up, and was promoted again.
    super::harness::eventually("the wiped node to rejoin as a voter", || async {
        cluster
            .log(follower)
            .contains("rejoined=true")
            .then_some(())
    })
    .await;
    let status = cluster
        .client(follower)
        .status()
        .await
        .unwrap()
        .locks
        .unwrap();
    assert_eq!(status.members, vec![0, 1, 2]);
    let target = cluster.applied(leader).await;
    cluster.applied_at_least(follower, target).await;
    let locks = cluster.client(follower).locks().await.unwrap().locks;
    assert_eq!(locks.len(), 5);
    for (info, got) in locks.iter().zip(&held) {
        assert_eq!(info.holders[0].token, got.token);
    }
}

/// Whole-cluster crash, the old leader restarted first and the others 200 ms later, then a read on a follower at
/// once: it must see every lock acquired before the crash, the last one (acquired through a follower) included.
/// The old leader comes back as leader in its old term with a committed index from before the last writes, so
/// a read barrier taken from that index alone misses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_right_after_a_staggered_whole_cluster_restart_sees_every_lock() {
    let mut cluster = Cluster::start(3);
    let mut acquired = 0;
    for round in 0..3 {
        let leader = cluster.leader().await;
        let followers: Vec<u64> = cluster
            .ids()
            .into_iter()
            .filter(|id| *id != leader)
            .collect();
        for i in 0..4 {
            let via = if i == 3 { followers[0] } else { leader };
            acquire(
                &cluster.client(via),
                &format!("r{round}-{i}"),
                "o",
                LockMode::Exclusive,
                0,
            )
            .await
            .unwrap();
            acquired += 1;
        }
        for id in cluster.ids() {
            cluster.kill(id);
        }
        cluster.restart(leader);
        // The stagger is the fault being tested, not a wait for a condition.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        for id in &followers {
            cluster.restart(*id);
        }
        let reader = cluster.client(followers[1]);
        let seen = super::harness::eventually("a read on a restarted follower", || async {
            reader.locks().await.ok()
        })
        .await;
        assert_eq!(
            seen.locks.len(),
            acquired,
            "round {round}: a linearizable read after the restart missed acquired locks: {seen:?}"
        );
    }
}

/// A node that lost its disk forgot the votes it granted, so it must not vote again until it has rejoined as a
/// new member: otherwise two candidates could each count it in one term (two leaders). Here it comes back alone,
/// so it cannot rejoin, and a candidate with a real log asks for its vote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_disk_grants_no_vote_before_it_rejoined() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader().await;
    for i in 0..3 {
        acquire(
            &cluster.client(leader),
            &format!("v-{i}"),
            "o",
            LockMode::Exclusive,
            0,
        )
        .await
        .unwrap();
    }
    // The wiped node is never the lowest id, which would bootstrap a group of its own.
    let wiped = cluster.ids().into_iter().max().unwrap();
    let candidate = cluster.ids().into_iter().find(|id| *id != wiped).unwrap();
    for id in cluster.ids() {
        cluster.kill(id);
    }
    cluster.wipe(wiped);
    cluster.restart(wiped);
    let ask = serde_json::json!({
        "vote": {"leader_id": {"term": 100, "node_id": candidate}, "committed": false},
        "last_log_id": {"leader_id": {"term": 99, "node_id": candidate}, "index": 100},
    });
    let http = reqwest::Client::new();
    let answer: serde_json::Value =
        super::harness::eventually("the wiped node to answer", || async {
            let resp = http
                .post(format!("http://{}/internal/raft/vote", cluster.addr(wiped)))
                .json(&ask)
                .send()
                .await
                .ok()?;
            resp.json().await.ok()
        })
        .await;
    assert_eq!(
        answer["Ok"]["vote_granted"],
        serde_json::json!(false),
        "a node with a wiped disk granted a vote: {answer}"
    );
    // The others come back; the wiped node rejoins and the group serves every lock.
    for id in cluster.ids().into_iter().filter(|id| *id != wiped) {
        cluster.restart(id);
    }
    super::harness::eventually("the wiped node to rejoin as a voter", || async {
        cluster.log(wiped).contains("rejoined=true").then_some(())
    })
    .await;
    let leader = cluster.leader().await;
    assert_eq!(cluster.client(leader).locks().await.unwrap().locks.len(), 3);
}
