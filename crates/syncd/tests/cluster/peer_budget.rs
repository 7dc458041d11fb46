//! Peers have their own request budget: clients filling every public slot of a follower with waiting acquires
//! must not hold up the leader's heartbeats to it, or the follower would campaign and the group would churn.

use std::time::{Duration, Instant};

use syncd_client::syncd_api::locks::LockMode;

use super::harness::Cluster;
use super::locks_basic::{acquire, req};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_clients_filling_every_slot_do_not_starve_raft() {
    let cluster = Cluster::start_with(3, &["--max-concurrent-requests", "4"]);
    let leader = cluster.leader().await;
    let term = cluster
        .client(leader)
        .status()
        .await
        .unwrap()
        .locks
        .unwrap()
        .term;
    acquire(
        &cluster.client(leader),
        "busy",
        "holder",
        LockMode::Exclusive,
        0,
    )
    .await
    .unwrap();
    // Twelve waiters per follower (three times its public slots), each waiting 4 s for the held lock.
    let mut waiters = Vec::new();
    for follower in cluster.ids().into_iter().filter(|id| *id != leader) {
        for i in 0..12 {
            let client = cluster.client(follower);
            waiters.push(tokio::spawn(async move {
                client
                    .acquire(
                        "busy",
                        &req(
                            &format!("w-{follower}-{i}"),
                            LockMode::Exclusive,
                            1_000,
                            4_000,
                        ),
                    )
                    .await
            }));
        }
    }
    // The waits last several election timeouts. The leader keeps its term meanwhile ...
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        cluster.assert_alive();
        let status = cluster
            .client(leader)
            .status()
            .await
            .unwrap()
            .locks
            .unwrap();
        assert_eq!(
            status.leader,
            Some(leader),
            "leadership moved while clients waited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for waiter in waiters {
        let _ = waiter.await.unwrap();
    }
    // ... and no follower ever campaigned: each kept hearing the leader's heartbeats.
    for id in cluster.ids() {
        let status = cluster.client(id).status().await.unwrap().locks.unwrap();
        assert_eq!(
            (status.term, status.leader),
            (term, Some(leader)),
            "node {id} campaigned while its public slots were full"
        );
    }
}
