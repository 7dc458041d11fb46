//! SyncClusters as a user writes them: JSON manifests through the dynamic API, so tests can also send what the
//! operator's Rust types could never produce, and read the status as `kubectl` would.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::wait::{self, Check};

/// The CRD's name.
pub const CRD_NAME: &str = "syncclusters.syncd.dev";
/// The four condition types the operator maintains.
pub const CONDITIONS: [&str; 4] = ["Available", "Progressing", "Degraded", "LockLeaderKnown"];
/// The three components, as they appear in object names (`<cluster>-<component>`) and status fields.
pub const COMPONENTS: [&str; 3] = ["locks", "queues", "cache"];

/// `syncd.dev/v1alpha1` `SyncCluster`.
pub fn resource() -> ApiResource {
    ApiResource {
        group: "syncd.dev".to_owned(),
        version: "v1alpha1".to_owned(),
        api_version: "syncd.dev/v1alpha1".to_owned(),
        kind: "SyncCluster".to_owned(),
        plural: "syncclusters".to_owned(),
    }
}

/// The SyncClusters of `namespace`.
pub fn api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &resource())
}

/// Requests small enough that a test cluster fits anywhere, a kind node with every test running at once included.
pub fn tiny_resources() -> Value {
    json!({"requests": {"cpu": "10m", "memory": "32Mi"}})
}

/// A small valid spec: 3 lock replicas, 2 queue replicas with replication factor 2, 2 cache replicas.
pub fn small_spec() -> Value {
    json!({
        "image": crate::image(),
        "imagePullPolicy": "IfNotPresent",
        "locks": {"replicas": 3, "storage": {"size": "64Mi"}, "resources": tiny_resources()},
        "queues": {"replicas": 2, "replicationFactor": 2, "storage": {"size": "64Mi"}, "resources": tiny_resources()},
        "cache": {"replicas": 2, "capacity": 1000, "resources": tiny_resources()},
    })
}

/// A SyncCluster manifest.
pub fn manifest(name: &str, spec: Value) -> DynamicObject {
    DynamicObject::new(name, &resource()).data(json!({ "spec": spec }))
}

/// Creates a SyncCluster; an admission rejection is the error.
pub async fn create(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: Value,
) -> Result<DynamicObject, kube::Error> {
    api(client, namespace)
        .create(&PostParams::default(), &manifest(name, spec))
        .await
}

/// Merge-patches the spec, as `kubectl patch --type merge -p '{"spec": ...}'` would.
pub async fn patch_spec(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: Value,
) -> Result<DynamicObject, kube::Error> {
    api(client, namespace)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
}

/// A field of the object by JSON pointer (`/status/locks/readyReplicas`).
pub fn field<'a>(object: &'a DynamicObject, pointer: &str) -> Option<&'a Value> {
    object.data.pointer(pointer)
}

/// `status.observedGeneration`.
pub fn observed_generation(object: &DynamicObject) -> Option<i64> {
    field(object, "/status/observedGeneration").and_then(Value::as_i64)
}

/// The status condition of `type_`.
pub fn condition(object: &DynamicObject, type_: &str) -> Option<Condition> {
    let conditions = field(object, "/status/conditions")?.as_array()?;
    conditions
        .iter()
        .filter_map(|c| serde_json::from_value::<Condition>(c.clone()).ok())
        .find(|c| c.type_ == type_)
}

/// `type=status/reason` of every condition, for messages.
pub fn conditions_summary(object: &DynamicObject) -> String {
    CONDITIONS
        .iter()
        .map(|t| match condition(object, t) {
            Some(c) => format!("{t}={}/{}", c.status, c.reason),
            None => format!("{t}=<none>"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits until the status describes the current generation (`observedGeneration == metadata.generation`) and
/// `accept` holds for it; returns that object.
pub async fn wait_for_status(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &str,
    timeout: std::time::Duration,
    accept: impl Fn(&DynamicObject) -> bool,
) -> anyhow::Result<DynamicObject> {
    let api = api(client, namespace);
    wait::until(what, timeout, || async {
        let object = api.get(name).await?;
        let current = object.metadata.generation.is_some()
            && observed_generation(&object) == object.metadata.generation;
        Ok(if current && accept(&object) {
            Check::Done(object)
        } else {
            Check::Pending(format!(
                "{} generation {:?} observedGeneration {:?} {} status {}",
                object.name_any(),
                object.metadata.generation,
                observed_generation(&object),
                conditions_summary(&object),
                field(&object, "/status").cloned().unwrap_or(Value::Null),
            ))
        })
    })
    .await
}

/// Whether condition `type_` has `status` (and `reason`, when given).
pub fn has_condition(
    object: &DynamicObject,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> bool {
    condition(object, type_)
        .is_some_and(|c| c.status == status && reason.is_none_or(|r| c.reason == r))
}
