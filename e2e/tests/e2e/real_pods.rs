//! With real pods (kind, `SYNCD_E2E_REAL_PODS=1`): the cluster the operator built serves. The tests reach the
//! client Services by port-forwarding through the API server, like `kubectl port-forward service/...`, so they
//! work from outside the cluster network and never dial a pod or service IP themselves.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use serde_json::{Value, json};
use syncd_client::syncd_api::locks::{AcquireRequest, LockMode, ReleaseRequest};
use syncd_e2e::forward::Forward;
use syncd_e2e::namespace::TestNamespace;
use syncd_e2e::sync::{self, small_spec};
use syncd_e2e::wait::{self, Check, REAL_PODS};
use syncd_e2e::{client, real_pods, skip};

fn acquire(owner: &str, ttl_ms: u64) -> AcquireRequest {
    AcquireRequest {
        owner: owner.to_owned(),
        mode: LockMode::Exclusive,
        ttl_ms,
        wait_ms: 0,
    }
}

/// Waits until every component is available and the operator knows the lock leader; returns the cluster.
async fn wait_until_serving(client: &kube::Client, ns: &str) -> kube::api::DynamicObject {
    sync::wait_for_status(
        client,
        ns,
        "demo",
        "Available and LockLeaderKnown",
        REAL_PODS,
        |c| {
            sync::has_condition(c, "Available", "True", None)
                && sync::has_condition(c, "LockLeaderKnown", "True", None)
        },
    )
    .await
    .unwrap()
}

/// Whether the node behind `forward` runs `role` (this version of syncd serves locks only, and reports only the
/// roles it serves).
async fn runs_role(forward: &Forward, role: &str) -> bool {
    let status = syncd_client::Client::new(forward.url())
        .status()
        .await
        .unwrap();
    status.roles.iter().any(|r| r == role)
}

#[tokio::test]
async fn locks_queues_and_cache_answer_through_port_forwards() {
    if !real_pods() {
        skip(
            "locks_queues_and_cache_answer_through_port_forwards",
            "set SYNCD_E2E_REAL_PODS=1 (kind)",
        );
        return;
    }
    let client = client().await.unwrap();
    let ns = TestNamespace::create(&client).await.unwrap();
    let ns = ns.name();
    sync::create(&client, ns, "demo", small_spec())
        .await
        .unwrap();
    wait_until_serving(&client, ns).await;

    // Locks: acquire, inspect, release, through whichever pod the Service forward lands on.
    let forward = Forward::to_service(&client, ns, "demo-locks", "http")
        .await
        .unwrap();
    let locks = syncd_client::Client::new(forward.url());
    let grant = locks
        .acquire("e2e", &acquire("e2e-test", 30_000))
        .await
        .unwrap();
    let info = locks.lock("e2e").await.unwrap();
    assert_eq!(info.holders.len(), 1, "{info:?}");
    assert_eq!(info.holders[0].owner, "e2e-test");
    assert_eq!(info.holders[0].token, grant.token);
    let released = locks
        .release(
            "e2e",
            &ReleaseRequest {
                owner: "e2e-test".to_owned(),
                token: Some(grant.token),
            },
        )
        .await
        .unwrap();
    assert!(released.released);

    // Queues: send, receive, ack.
    let forward = Forward::to_service(&client, ns, "demo-queues", "http")
        .await
        .unwrap();
    if runs_role(&forward, "queue").await {
        let http = reqwest::Client::new();
        let base = forward.url();
        let sent = http
            .post(format!("{base}/v1/queues/e2e/messages"))
            .json(&json!({"body": "hello"}))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status().as_u16(), 201);
        let received: Value = http
            .post(format!("{base}/v1/queues/e2e/receive"))
            .json(&json!({"max": 1, "visibility_ms": 30_000, "wait_ms": 5_000}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let message = &received["messages"][0];
        assert_eq!(message["body"], "hello", "{received}");
        let acked: Value = http
            .post(format!("{base}/v1/queues/e2e/ack"))
            .json(&json!({"receipts": [message["receipt"]]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(acked["acked"], 1, "{acked}");
    } else {
        skip(
            "the queue calls",
            "the queue pods do not run the queue role in this version of syncd",
        );
    }

    // Cache: put, get, delete.
    let forward = Forward::to_service(&client, ns, "demo-cache", "http")
        .await
        .unwrap();
    if runs_role(&forward, "cache").await {
        let http = reqwest::Client::new();
        let url = format!("{}/v1/cache/e2e-key", forward.url());
        let put = http.put(&url).body("value").send().await.unwrap();
        assert_eq!(put.status().as_u16(), 204);
        let got = http.get(&url).send().await.unwrap();
        assert_eq!(got.status().as_u16(), 200);
        assert_eq!(got.text().await.unwrap(), "value");
        let deleted = http.delete(&url).send().await.unwrap();
        assert_eq!(deleted.status().as_u16(), 204);
        assert_eq!(http.get(&url).send().await.unwrap().status().as_u16(), 404);
    } else {
        skip(
            "the cache calls",
            "the cache pods do not run the cache role in this version of syncd",
        );
    }
}

#[tokio::test]
async fn a_new_lock_leader_serves_after_the_leader_pod_is_deleted() {
    if !real_pods() {
        skip(
            "a_new_lock_leader_serves_after_the_leader_pod_is_deleted",
            "set SYNCD_E2E_REAL_PODS=1 (kind)",
        );
        return;
    }
    let client = client().await.unwrap();
    let ns = TestNamespace::create(&client).await.unwrap();
    let ns = ns.name();
    sync::create(&client, ns, "demo", small_spec())
        .await
        .unwrap();
    let cluster = wait_until_serving(&client, ns).await;
    let leader = sync::field(&cluster, "/status/lockLeader")
        .and_then(Value::as_u64)
        .unwrap();
    let term = sync::field(&cluster, "/status/lockTerm")
        .and_then(Value::as_u64)
        .unwrap();

    // Talk to a follower that stays up; take a lock before the leader goes.
    let survivor = (leader + 1) % 3;
    let forward = Forward::to_pod(&client, ns, &format!("demo-locks-{survivor}"), 7080)
        .await
        .unwrap();
    let locks = syncd_client::Client::new(forward.url());
    let before = locks
        .acquire("survives", &acquire("e2e-before", 120_000))
        .await
        .unwrap();

    Api::<Pod>::namespaced(client.clone(), ns)
        .delete(&format!("demo-locks-{leader}"), &DeleteParams::default())
        .await
        .unwrap();

    // A new leader is elected (a later term), and serves writes through the surviving node.
    let new_leader = wait::until("a new lock leader", REAL_PODS, || async {
        let status = locks.status().await?;
        let view = status
            .locks
            .ok_or_else(|| anyhow::anyhow!("no lock role"))?;
        Ok(match view.leader {
            Some(l) if view.term > term => Check::Done(l),
            other => Check::Pending(format!("leader {other:?} term {}", view.term)),
        })
    })
    .await
    .unwrap();
    eprintln!("lock leader {leader} (term {term}) deleted; leader now {new_leader}");
    let after = wait::until(
        "an acquire through the new leader",
        Duration::from_secs(60),
        || async {
            Ok(Check::Done(
                locks
                    .acquire("after", &acquire("e2e-after", 30_000))
                    .await?,
            ))
        },
    )
    .await
    .unwrap();
    assert!(after.token > 0);
    // What was granted before the failover is still held.
    let info = locks.lock("survives").await.unwrap();
    assert!(
        info.holders
            .iter()
            .any(|h| h.owner == "e2e-before" && h.token == before.token),
        "{info:?}"
    );

    // The operator sees the new term too.
    sync::wait_for_status(
        &client,
        ns,
        "demo",
        "the new term in the status",
        REAL_PODS,
        |c| {
            sync::field(c, "/status/lockTerm")
                .and_then(Value::as_u64)
                .is_some_and(|t| t > term)
                && sync::has_condition(c, "LockLeaderKnown", "True", None)
        },
    )
    .await
    .unwrap();
}
