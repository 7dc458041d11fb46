//! With kwok's fake pods (e2e/run.sh): the pods are scheduled and reported Running/Ready, but nothing serves, and
//! the operator cannot reach the lock service. That must be a condition on the status, not a crash or a stuck
//! reconcile.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::json;
use syncd_e2e::namespace::TestNamespace;
use syncd_e2e::sync::{self, small_spec};
use syncd_e2e::wait::{self, RECONCILE};
use syncd_e2e::{client, real_pods, skip};

/// Whether the cluster has a kwok node (annotation `kwok.x-k8s.io/node: fake`, see e2e/kwok/cluster.yaml).
async fn has_fake_node(client: &Client) -> bool {
    Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .is_ok_and(|nodes| {
            nodes.items.iter().any(|n| {
                n.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("kwok.x-k8s.io/node"))
                    .is_some_and(|v| v == "fake")
            })
        })
}

#[tokio::test]
async fn fake_pods_run_and_an_unreachable_lock_leader_is_a_condition() {
    let client = client().await.unwrap();
    if real_pods() || !has_fake_node(&client).await {
        skip(
            "fake_pods_run_and_an_unreachable_lock_leader_is_a_condition",
            "needs kwok fake pods (e2e/run.sh)",
        );
        return;
    }
    let ns = TestNamespace::create(&client).await.unwrap();
    let ns = ns.name();
    sync::create(&client, ns, "demo", small_spec())
        .await
        .unwrap();

    // kwok schedules and "runs" every pod (the lock and queue pods once their fake volumes are bound), so the
    // cluster counts as available, while the lock leader is reported unknown because it cannot be asked.
    let cluster = sync::wait_for_status(
        &client,
        ns,
        "demo",
        "every pod ready, Available, LockLeaderKnown=False/Unreachable",
        RECONCILE,
        |c| {
            sync::field(c, "/status/locks/readyReplicas") == Some(&json!(3))
                && sync::field(c, "/status/queues/readyReplicas") == Some(&json!(2))
                && sync::field(c, "/status/cache/readyReplicas") == Some(&json!(2))
                && sync::has_condition(c, "Available", "True", None)
                && sync::has_condition(c, "LockLeaderKnown", "False", Some("Unreachable"))
        },
    )
    .await
    .unwrap();
    let leader = sync::condition(&cluster, "LockLeaderKnown").unwrap();
    assert!(
        leader.message.contains("demo-locks"),
        "the message names the lock service it tried: {:?}",
        leader.message
    );
    assert_eq!(sync::field(&cluster, "/status/lockLeader"), None);
    assert!(
        sync::has_condition(&cluster, "Degraded", "False", None),
        "{}",
        sync::conditions_summary(&cluster)
    );

    // The fake pods got addresses from the fake node's podCIDR, a documentation range nobody routes.
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app.kubernetes.io/instance=demo"))
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 7);
    for pod in &pods.items {
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        assert!(ip.starts_with("203.0.113."), "pod IP {ip:?}");
    }

    // The operator keeps reconciling this cluster: a later change still lands in the status.
    sync::patch_spec(&client, ns, "demo", json!({"cache": {"replicas": 3}}))
        .await
        .unwrap();
    wait::until("the next change to be reconciled", RECONCILE, || async {
        let c = sync::api(&client, ns).get("demo").await?;
        let ready = sync::field(&c, "/status/cache/readyReplicas").cloned();
        Ok(wait::check(ready == Some(json!(3)), (), || {
            format!("cache ready {ready:?}")
        }))
    })
    .await
    .unwrap();
}
