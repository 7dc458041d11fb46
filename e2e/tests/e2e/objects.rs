//! Creating a SyncCluster produces, per component, the objects the design names, all owned by the cluster:
//! StatefulSet `<c>-<component>`, headless Service `<c>-<component>-peers` (publishNotReadyAddresses), client
//! Service `<c>-<component>` (port http 7080), PodDisruptionBudget `<c>-<component>` and ConfigMap
//! `<c>-<component>-config`.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use syncd_e2e::client;
use syncd_e2e::namespace::TestNamespace;
use syncd_e2e::sync::{self, COMPONENTS, small_spec};
use syncd_e2e::wait::{self, Check, RECONCILE};

/// Waits for `name` to exist and returns it.
async fn wait_for<K>(client: &Client, namespace: &str, name: &str) -> K
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let what = format!("{} {name}", K::kind(&()));
    wait::until(&what, RECONCILE, || async {
        Ok(match api.get_opt(name).await? {
            Some(object) => Check::Done(object),
            None => Check::Pending("not found".to_owned()),
        })
    })
    .await
    .unwrap()
}

fn assert_owned(meta: &ObjectMeta, uid: &str, what: &str) {
    let owners = meta.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{what}: owner references {owners:?}");
    let owner = &owners[0];
    assert_eq!(owner.api_version, "syncd.dev/v1alpha1", "{what}");
    assert_eq!(owner.kind, "SyncCluster", "{what}");
    assert_eq!(owner.name, "demo", "{what}");
    assert_eq!(owner.uid, uid, "{what}");
    assert_eq!(owner.controller, Some(true), "{what}");
    let labels = meta.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("syncd-operator"),
        "{what}: labels {labels:?}"
    );
    assert_eq!(
        labels.get("app.kubernetes.io/instance").map(String::as_str),
        Some("demo"),
        "{what}"
    );
}

#[tokio::test]
async fn a_cluster_gets_its_objects_with_owner_references() {
    let client = client().await.unwrap();
    let ns = TestNamespace::create(&client).await.unwrap();
    let ns = ns.name();
    let created = sync::create(&client, ns, "demo", small_spec())
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();

    for component in COMPONENTS {
        let name = format!("demo-{component}");
        let what = |kind: &str| format!("{kind} of {component}");

        let sts: StatefulSet = wait_for(&client, ns, &name).await;
        assert_owned(&sts.metadata, &uid, &what("StatefulSet"));
        let spec = sts.spec.clone().unwrap();
        let expected_replicas = match component {
            "locks" => 3,
            _ => 2,
        };
        assert_eq!(
            spec.replicas,
            Some(expected_replicas),
            "{}",
            what("StatefulSet")
        );
        assert_eq!(
            spec.service_name.as_deref(),
            Some(format!("{name}-peers").as_str())
        );
        let pod_spec = spec.template.spec.clone().unwrap();
        assert_eq!(pod_spec.containers[0].image, Some(syncd_e2e::image()));
        let env_from = pod_spec.containers[0].env_from.clone().unwrap_or_default();
        assert!(
            env_from.iter().any(|e| e
                .config_map_ref
                .as_ref()
                .is_some_and(|c| c.name == format!("{name}-config"))),
            "{}: the pods read the component's ConfigMap: {env_from:?}",
            what("StatefulSet")
        );
        let durable = component != "cache";
        assert_eq!(
            spec.volume_claim_templates.is_some(),
            durable,
            "{}: volume claim templates",
            what("StatefulSet")
        );

        let peers: Service = wait_for(&client, ns, &format!("{name}-peers")).await;
        assert_owned(&peers.metadata, &uid, &what("peers Service"));
        let peers_spec = peers.spec.unwrap();
        assert_eq!(peers_spec.cluster_ip.as_deref(), Some("None"), "headless");
        assert_eq!(peers_spec.publish_not_ready_addresses, Some(true));

        let service: Service = wait_for(&client, ns, &name).await;
        assert_owned(&service.metadata, &uid, &what("client Service"));
        let service_spec = service.spec.unwrap();
        assert_ne!(
            service_spec.cluster_ip.as_deref(),
            Some("None"),
            "not headless"
        );
        let ports = service_spec.ports.unwrap_or_default();
        assert!(
            ports
                .iter()
                .any(|p| p.name.as_deref() == Some("http") && p.port == 7080),
            "{}: ports {ports:?}",
            what("client Service")
        );

        let pdb: PodDisruptionBudget = wait_for(&client, ns, &name).await;
        assert_owned(&pdb.metadata, &uid, &what("PodDisruptionBudget"));
        let pdb_spec = pdb.spec.unwrap();
        if component == "locks" {
            // A raft majority of 3 stays up through voluntary evictions.
            assert_eq!(pdb_spec.min_available, Some(IntOrString::Int(2)));
        } else {
            assert_eq!(pdb_spec.max_unavailable, Some(IntOrString::Int(1)));
        }

        let config: ConfigMap = wait_for(&client, ns, &format!("{name}-config")).await;
        assert_owned(&config.metadata, &uid, &what("ConfigMap"));
        let data = config.data.unwrap_or_default();
        assert!(
            data.contains_key("SYNCD_ROLES"),
            "{}: {data:?}",
            what("ConfigMap")
        );
    }
}
