//! Deleting a SyncCluster garbage-collects everything it owned: the operator sets controller owner references and
//! no finalizer, so this is the API server's garbage collector (kube-controller-manager) at work.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use syncd_e2e::client;
use syncd_e2e::namespace::TestNamespace;
use syncd_e2e::sync::{self, small_spec};
use syncd_e2e::wait::{self, RECONCILE};

const SELECTOR: &str = "app.kubernetes.io/instance=demo";
const GARBAGE_COLLECTION: Duration = Duration::from_secs(120);

async fn count<K>(client: &Client, ns: &str) -> anyhow::Result<usize>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default().labels(SELECTOR))
        .await?
        .items
        .len())
}

/// StatefulSets, Services, PDBs and ConfigMaps of the cluster, in that order.
async fn owned(client: &Client, ns: &str) -> anyhow::Result<[usize; 4]> {
    Ok([
        count::<StatefulSet>(client, ns).await?,
        count::<Service>(client, ns).await?,
        count::<PodDisruptionBudget>(client, ns).await?,
        count::<ConfigMap>(client, ns).await?,
    ])
}

#[tokio::test]
async fn deleting_a_cluster_collects_what_it_owned() {
    let client = client().await.unwrap();
    let ns = TestNamespace::create(&client).await.unwrap();
    let ns = ns.name();
    sync::create(&client, ns, "demo", small_spec())
        .await
        .unwrap();
    wait::until("every owned object", RECONCILE, || async {
        let counts = owned(&client, ns).await?;
        Ok(wait::check(counts == [3, 6, 3, 3], (), || {
            format!("statefulsets, services, pdbs, configmaps: {counts:?}")
        }))
    })
    .await
    .unwrap();

    // Foreground would wait for the dependents itself; background is what `kubectl delete` does by default, and
    // leaves the collection to the garbage collector.
    sync::api(&client, ns)
        .delete("demo", &DeleteParams::background())
        .await
        .unwrap();
    // The garbage collector learns about new resources (a CRD installed just before the suite) from discovery,
    // which it refreshes every 30 s: allow for one refresh on top of the collection itself.
    wait::until(
        "the owned objects to be garbage-collected",
        GARBAGE_COLLECTION,
        || async {
            let counts = owned(&client, ns).await?;
            let cluster = sync::api(&client, ns).get_opt("demo").await?;
            Ok(wait::check(
                counts == [0, 0, 0, 0] && cluster.is_none(),
                (),
                || {
                    format!(
                        "statefulsets, services, pdbs, configmaps: {counts:?}; cluster present: {}",
                        cluster.is_some()
                    )
                },
            ))
        },
    )
    .await
    .unwrap();
    // The pods go with their StatefulSets.
    wait::until("the pods to be gone", RECONCILE, || async {
        let pods = count::<Pod>(&client, ns).await?;
        Ok(wait::check(pods == 0, (), || format!("{pods} pods left")))
    })
    .await
    .unwrap();
}
