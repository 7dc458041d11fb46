//! Changes to a running cluster are reconciled: scaling, a new image, new config. (The lock group's scaling goes
//! through raft membership and needs a reachable lock service: the real-pod tests cover it.)

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use serde_json::json;
use syncd_e2e::client;
use syncd_e2e::namespace::TestNamespace;
use syncd_e2e::sync::{self, small_spec};
use syncd_e2e::wait::{self, Check, RECONCILE};

const CONFIG_HASH: &str = "syncd.dev/config-hash";

async fn statefulset(client: &Client, ns: &str, name: &str) -> anyhow::Result<StatefulSet> {
    Ok(Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get(name)
        .await?)
}

fn replicas(sts: &StatefulSet) -> Option<i32> {
    sts.spec.as_ref().and_then(|s| s.replicas)
}

fn image(sts: &StatefulSet) -> Option<String> {
    sts.spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}

fn template_annotations(sts: &StatefulSet) -> BTreeMap<String, String> {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}

/// Waits until the StatefulSet `name` satisfies `accept`, and returns it.
async fn wait_for_statefulset(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    accept: impl Fn(&StatefulSet) -> bool,
) -> StatefulSet {
    wait::until(what, RECONCILE, || async {
        let sts = statefulset(client, ns, name).await?;
        Ok(if accept(&sts) {
            Check::Done(sts)
        } else {
            Check::Pending(format!(
                "replicas {:?} image {:?} annotations {:?}",
                replicas(&sts),
                image(&sts),
                template_annotations(&sts)
            ))
        })
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn scaling_queues_and_cache_is_reconciled() {
    let client = client().await.unwrap();
    let ns = TestNamespace::create(&client).await.unwrap();
    let ns = ns.name();
    sync::create(&client, ns, "demo", small_spec())
        .await
        .unwrap();
    wait_for_statefulset(&client, ns, "demo-queues", "2 queue replicas", |s| {
        replicas(s) == Some(2)
    })
    .await;
    wait_for_statefulset(&client, ns, "demo-cache", "2 cache replicas", |s| {
        replicas(s) == Some(2)
    })
    .await;

    sync::patch_spec(
        &client,
        ns,
        "demo",
        json!({"queues": {"replicas": 4}, "cache": {"replicas": 1}}),
    )
    .await
    .unwrap();
    wait_for_statefulset(&client, ns, "demo-queues", "queues scaled up to 4", |s| {
        replicas(s) == Some(4)
    })
    .await;
    wait_for_statefulset(&client, ns, "demo-cache", "cache scaled down to 1", |s| {
        replicas(s) == Some(1)
    })
    .await;
    let cluster = sync::wait_for_status(
        &client,
        ns,
        "demo",
        "the status of the new sizes",
        RECONCILE,
        |c| {
            sync::field(c, "/status/queues/desiredReplicas") == Some(&json!(4))
                && sync::field(c, "/status/cache/desiredReplicas") == Some(&json!(1))
        },
    )
    .await
    .unwrap();
    assert_eq!(
        sync::field(&cluster, "/spec/queues/replicas"),
        Some(&json!(4))
    );

    // Turning a component off (replicas 0) removes its objects.
    sync::patch_spec(&client, ns, "demo", json!({"cache": {"replicas": 0}}))
        .await
        .unwrap();
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    wait::until("the cache objects to be removed", RECONCILE, || async {
        let sts = statefulsets.get_opt("demo-cache").await?;
        let config = configs.get_opt("demo-cache-config").await?;
        Ok(wait::check(sts.is_none() && config.is_none(), (), || {
            format!(
                "statefulset present: {}, configmap present: {}",
                sts.is_some(),
                config.is_some()
            )
        }))
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_image_change_is_reconciled() {
    let client = client().await.unwrap();
    let ns = TestNamespace::create(&client).await.unwrap();
    let ns = ns.name();
    sync::create(&client, ns, "demo", small_spec())
        .await
        .unwrap();
    let old = syncd_e2e::image();
    for component in sync::COMPONENTS {
        let name = format!("demo-{component}");
        wait_for_statefulset(&client, ns, &name, "the first image", |s| {
            image(s).as_deref() == Some(old.as_str())
        })
        .await;
    }

    // A tag nobody pulls: only the templates are looked at, never the pods.
    let new = "registry.invalid/syncd:e2e-next";
    sync::patch_spec(&client, ns, "demo", json!({"image": new}))
        .await
        .unwrap();
    for component in sync::COMPONENTS {
        let name = format!("demo-{component}");
        let sts = wait_for_statefulset(
            &client,
            ns,
            &name,
            &format!("{component} on the new image"),
            |s| image(s).as_deref() == Some(new),
        )
        .await;
        let labels = sts.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels.get("app.kubernetes.io/version").map(String::as_str),
            Some("e2e-next"),
            "{component}: the version label follows the image tag"
        );
    }
}

#[tokio::test]
async fn a_config_change_is_reconciled_and_rolls_the_pods() {
    let client = client().await.unwrap();
    let ns = TestNamespace::create(&client).await.unwrap();
    let ns = ns.name();
    sync::create(&client, ns, "demo", small_spec())
        .await
        .unwrap();
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let capacity = |config: &ConfigMap| {
        config
            .data
            .as_ref()
            .and_then(|d| d.get("SYNCD_CACHE_CAPACITY").cloned())
    };
    wait::until("the cache ConfigMap", RECONCILE, || async {
        let config = configs.get_opt("demo-cache-config").await?;
        let value = config.as_ref().and_then(capacity);
        Ok(wait::check(value.as_deref() == Some("1000"), (), || {
            format!("{value:?}")
        }))
    })
    .await
    .unwrap();
    let before = wait_for_statefulset(&client, ns, "demo-cache", "a config hash", |s| {
        template_annotations(s).contains_key(CONFIG_HASH)
    })
    .await;
    let old_hash = template_annotations(&before)[CONFIG_HASH].clone();

    sync::patch_spec(&client, ns, "demo", json!({"cache": {"capacity": 5000}}))
        .await
        .unwrap();
    wait::until("the new capacity in the ConfigMap", RECONCILE, || async {
        let value = capacity(&configs.get("demo-cache-config").await?);
        Ok(wait::check(value.as_deref() == Some("5000"), (), || {
            format!("{value:?}")
        }))
    })
    .await
    .unwrap();
    // Pods read their environment at start only: a new hash in the pod template makes the StatefulSet roll them.
    wait_for_statefulset(&client, ns, "demo-cache", "a new config hash", |s| {
        template_annotations(s)
            .get(CONFIG_HASH)
            .is_some_and(|h| *h != old_hash)
    })
    .await;
}
